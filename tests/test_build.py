"""Building the IR: phases, ordering, in-place blobs, defaults, devices."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.diagnostics import GraphError, SpecError


def load_text(tmp_path: Path, text: str, phase: str = "train") -> netdsl.ir.Net:
    p = tmp_path / "n.net"
    p.write_text(text)
    net = netdsl.load(p, phase)
    net.check()
    return net


BASE = 'input { name: "data" shape: [3, 8, 8] }\n'


def test_phase_filtering_like_caffe(tmp_path: Path) -> None:
    text = BASE + """
    layer { name: "a" type: ReLU bottom: "data" include { phase: TRAIN } }
    layer { name: "b" type: ReLU bottom: "data" include { phase: TEST } }
    layer { name: "c" type: ReLU bottom: "data" exclude { phase: TEST } }
    layer { name: "d" type: ReLU bottom: "data" phase: TEST }
    layer { name: "e" type: ReLU bottom: "data" include { phase: TEST } include { phase: TRAIN } }
    layer { name: "f" type: ReLU bottom: "data" include { stage: "deploy" } }
    """
    train = [lay.name for lay in load_text(tmp_path, text, "train").layers]
    test = [lay.name for lay in load_text(tmp_path, text, "test").layers]
    assert train == ["data", "a", "c", "e"]
    assert test == ["data", "b", "d", "e"]


def test_same_name_in_different_phases_is_fine(tmp_path: Path) -> None:
    text = """
    layer { name: "data" type: Input top: "data" shape: [1, 4, 4] phase: TRAIN }
    layer { name: "data" type: Input top: "data" shape: [1, 8, 8] phase: TEST }
    """
    assert load_text(tmp_path, text, "test").layers[0].params.shape == ((1, 8, 8),)


def test_include_and_exclude_together_is_an_error(tmp_path: Path) -> None:
    text = BASE + ('layer { name: "a" type: ReLU bottom: "data" include { phase: TRAIN } '
                   'exclude { phase: TEST } }')
    with pytest.raises(SpecError, match="not both"):
        load_text(tmp_path, text)


def test_layers_in_any_order(tmp_path: Path) -> None:
    text = """
    layer { name: "relu" type: ReLU bottom: "conv" }
    layer { name: "conv" type: Convolution bottom: "data" num_output: 2 kernel_size: 3 }
    input { name: "data" shape: [3, 8, 8] }
    """
    assert [lay.name for lay in load_text(tmp_path, text).layers] == ["data", "conv", "relu"]


def test_in_place_keeps_order_against_readers(tmp_path: Path) -> None:
    text = BASE + """
    layer { name: "conv" type: Convolution bottom: "data" num_output: 2 kernel_size: 3 }
    layer { name: "copy" type: Split bottom: "conv" top: "before" }
    layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
    layer { name: "after" type: Sigmoid bottom: "conv" }
    """
    net = load_text(tmp_path, text)
    assert [lay.name for lay in net.layers] == ["data", "conv", "copy", "relu", "after"]
    assert net.layer("relu").in_place
    assert net.outputs == ("before", "after")


def test_defaults_top_is_name_and_bottom_is_previous(tmp_path: Path) -> None:
    text = BASE + """
    layer { name: "conv" type: Convolution num_output: 2 kernel_size: 3 }
    layer { name: "pool" type: Pooling kernel_size: 2 stride: 2 }
    """
    net = load_text(tmp_path, text)
    assert net.layer("conv").bottoms == ("data",)
    assert net.layer("pool").bottoms == ("conv",)
    assert net.layer("pool").tops == ("pool",)


def test_loss_weight_defaults(tmp_path: Path) -> None:
    text = BASE + """
    input { name: "label" shape: [] }
    layer { name: "ip" type: InnerProduct bottom: "data" num_output: 3 }
    layer { name: "loss" type: SoftmaxWithLoss bottom: ["ip", "label"] }
    layer { name: "acc" type: Accuracy bottom: ["ip", "label"] }
    layer { name: "aux" type: SoftmaxWithLoss bottom: ["ip", "label"] loss_weight: 0.3 }
    """
    net = load_text(tmp_path, text)
    assert net.layer("loss").loss_weights == (1.0,)
    assert net.layer("acc").loss_weights == ()
    assert net.layer("aux").loss_weights == (0.3,)


def test_param_specs_and_fillers(tmp_path: Path) -> None:
    text = BASE + """
    layer { name: "conv" type: Convolution bottom: "data" num_output: 2 kernel_size: 3
            param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
            weight_filler { type: "gaussian" std: 0.01 } }
    """
    conv = load_text(tmp_path, text).layer("conv")
    assert [(p.lr_mult, p.decay_mult) for p in conv.param_specs] == [(1, 1), (2, 0)]
    assert conv.params.weight_filler.type.name == "gaussian"
    assert conv.params.weight_filler.std == 0.01


def test_devices_follow_inputs(tmp_path: Path) -> None:
    text = """devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [3, 8, 8] }
    layer { name: "a" type: Convolution bottom: "data" num_output: 2 kernel_size: 3
            devices: ["gpu:1"] }
    layer { name: "r" type: ReLU bottom: "a" }
    layer { name: "b" type: Convolution bottom: "r" num_output: 2 kernel_size: 3 }
    """
    net = load_text(tmp_path, text)
    assert net.layer("a").devices == ("gpu:1",)
    assert net.layer("r").devices == ("gpu:1",)
    assert net.layer("b").devices == ("gpu:0", "gpu:1")


def test_arity_is_checked(tmp_path: Path) -> None:
    text = BASE + 'layer { name: "e" type: Eltwise bottom: "data" top: ["x", "y"] }'
    with pytest.raises(Exception) as e:
        load_text(tmp_path, text)
    assert isinstance(e.value, GraphError | netdsl.diagnostics.ErrorList)


def test_param_from_a_list_variable(tmp_path: Path) -> None:
    text = BASE + """
    let lr = [{ lr_mult: 1 decay_mult: 1 }, { lr_mult: 2 decay_mult: 0 }]
    layer { name: "conv" type: Convolution bottom: "data" num_output: 2 kernel_size: 3
            param: $lr }
    """
    conv = load_text(tmp_path, text).layer("conv")
    assert [(p.lr_mult, p.decay_mult) for p in conv.param_specs] == [(1, 1), (2, 0)]
