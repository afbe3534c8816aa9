"""Group instances and edits wire as a user expects: a group's first layer reads the
instance's bottom, names made with ``${}`` that collide across instances get a hint, the
first layer after ``input {}`` blocks reads the first input, and ``replace`` renaming a
layer keeps its readers wired."""

from __future__ import annotations

import pytest

from netdsl.build import build
from netdsl.diagnostics import NetdslError, render
from tests.resolve.helpers import R, get, vals

INPUTS = 'input { name: "data" shape: [3, 8, 8] }\n'

BLOCK = """
group blk(n) {
  layer { name: "conv" type: Convolution num_output: $n kernel_size: 1 }
  layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
}
"""


def wiring(text: str, phase: str = "train") -> dict[str, tuple[list[str], list[str]]]:
    net = build(R(text), phase)
    return {lay.name: (list(lay.bottoms), list(lay.tops)) for lay in net.layers}


def test_first_layer_of_a_group_reads_the_instances_bottom() -> None:
    text = INPUTS + BLOCK + """
layer { name: "a" type: blk n: 4 }
layer { name: "side" type: Convolution bottom: "data" num_output: 2 kernel_size: 1 }
layer { name: "b" type: blk n: 5 bottom: "a" }
"""
    w = wiring(text)
    assert w["a/conv"][0] == ["data"]
    # not "side", the layer before it in the file, but the instance's bottom
    assert w["b/conv"][0] == ["a/conv"]
    assert vals(get(R(text), "b/conv"), "bottom") == ["a/conv"]


def test_group_first_layer_own_bottom_wins() -> None:
    text = INPUTS + """
group g() {
  layer { name: "c" type: Convolution bottom: $bottom num_output: 2 kernel_size: 1 }
  layer { name: "d" type: Convolution bottom: "c" num_output: 2 kernel_size: 1 }
}
layer { name: "x" type: Convolution num_output: 2 kernel_size: 1 }
layer { name: "y" type: Convolution bottom: "data" num_output: 2 kernel_size: 1 }
layer { name: "i" type: g bottom: "x" }
"""
    assert wiring(text)["i/c"][0] == ["x"]


def test_group_without_instance_bottom_keeps_the_chain() -> None:
    text = INPUTS + BLOCK + """
layer { name: "x" type: Convolution num_output: 2 kernel_size: 1 }
layer { name: "a" type: blk n: 4 }
"""
    assert wiring(text)["a/conv"][0] == ["x"]
    assert vals(get(R(text), "a/conv"), "bottom") == []  # nothing written: build's default


def test_group_first_layer_that_takes_no_bottom_is_left_alone() -> None:
    text = INPUTS + """
group src() {
  layer { name: "in" type: Input shape: [3, 8, 8] }
  layer { name: "c" type: Convolution bottom: "in" num_output: 2 kernel_size: 1 }
}
layer { name: "s" type: src bottom: "data" }
"""
    assert vals(get(R(text), "s/in"), "bottom") == []
    assert wiring(text)["s/in"][0] == []


def test_interpolated_names_colliding_across_instances_get_a_hint() -> None:
    text = INPUTS + """
group blk(n) {
  layer { name: "conv" type: Convolution num_output: 2 kernel_size: 1 }
  layer { name: "relu${n}" type: ReLU bottom: "conv" top: "conv" }
}
layer { name: "a" type: blk n: 4 }
layer { name: "b" type: blk n: 4 }
"""
    with pytest.raises(NetdslError) as e:
        build(R(text), "train")
    msg = render(e.value)
    assert "duplicate layer name 'relu4'" in msg
    assert "instances 'a' and 'b'" in msg and "${name}" in msg


def test_plain_duplicate_keeps_the_plain_hint() -> None:
    text = INPUTS + """
layer { name: "c" type: Convolution num_output: 2 kernel_size: 1 }
layer { name: "c" type: Convolution num_output: 2 kernel_size: 1 }
"""
    with pytest.raises(NetdslError) as e:
        build(R(text), "train")
    assert "unique within a phase" in render(e.value)


def test_first_layer_after_inputs_reads_the_first_input() -> None:
    text = INPUTS + 'input { name: "label" shape: [] }\n' + """
layer { name: "c" type: Convolution num_output: 2 kernel_size: 1 }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["c", "label"] }
"""
    assert wiring(text)["c"][0] == ["data"]


def test_group_after_inputs_reads_the_first_input() -> None:
    text = INPUTS + 'input { name: "label" shape: [] }\n' + BLOCK + """
layer { name: "a" type: blk n: 4 }
"""
    assert wiring(text)["a/conv"][0] == ["data"]


def test_later_inputs_after_a_layer_still_chain_normally() -> None:
    text = INPUTS + """
layer { name: "c" type: Convolution num_output: 2 kernel_size: 1 }
input { name: "other" shape: [2, 8, 8] }
layer { name: "d" type: ReLU }
"""
    assert wiring(text)["d"][0] == ["other"]


REPLACE = INPUTS + """
layer { name: "fc8" type: InnerProduct num_output: 10 }
layer { name: "prob" type: Softmax bottom: "fc8" }
"""


@pytest.mark.parametrize("body", ['name: "fc8_new" num_output: 5',
                                  'name: "fc8_new" type: InnerProduct num_output: 5'])
def test_replace_renaming_a_layer_keeps_its_readers(body: str) -> None:
    w = wiring(REPLACE + f'replace "fc8" {{ {body} }}\n')
    assert w["fc8_new"] == (["data"], ["fc8"])
    assert w["prob"][0] == ["fc8"]
    assert "fc8" not in w


def test_replace_with_its_own_top_renames_the_blob() -> None:
    text = REPLACE.replace('bottom: "fc8"', 'bottom: "fc8_new"') + \
        'replace "fc8" { name: "fc8_new" top: "fc8_new" }\n'
    w = wiring(text)
    assert w["fc8_new"] == (["data"], ["fc8_new"])
    assert w["prob"][0] == ["fc8_new"]


def test_replace_keeps_an_explicit_old_top() -> None:
    text = INPUTS + """
layer { name: "fc8" type: InnerProduct num_output: 10 top: "scores" }
layer { name: "prob" type: Softmax bottom: "scores" }
replace "fc8" { name: "fc8_new" }
"""
    assert wiring(text)["fc8_new"] == (["data"], ["scores"])
