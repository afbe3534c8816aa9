"""Edits: replace, update, remove and insert on the flat layer list."""

from __future__ import annotations

from tests.resolve.helpers import (
    RF,
    TOWER,
    R,
    at,
    err,
    get,
    names,
    plain,
    vals,
    wiring,
)

NET = """\
input { name: "data" shape: [3, 8, 8] }
layer { name: "conv1" type: Convolution bottom: "data" top: "conv1" num_output: 8
        devices: ["gpu:1"] phase: TRAIN }
layer { name: "relu1" type: ReLU bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: LRN bottom: "conv1" top: "norm1" local_size: 5 alpha: 1 }
layer { name: "pool1" type: Pooling bottom: "norm1" top: "pool1" stride: 2 stride: 3 }
layer { name: "fc" type: InnerProduct bottom: "pool1" top: "fc" }
"""


def test_replace_keeps_wiring():
    spec = R(NET + 'replace "norm1" { type: BatchNorm eps: 0.001 }\n'
                   'replace "conv1" { type: Deconvolution num_output: 4 devices: ["gpu:0"] }\n')
    assert plain(get(spec, "norm1")) == [("name", "norm1"), ("type", "BatchNorm"),
                                         ("bottom", "conv1"), ("top", "norm1"), ("eps", 0.001)]
    c = get(spec, "conv1")
    assert c.scalar("type") == "Deconvolution" and c.scalar("num_output") == 4
    assert vals(c, "devices") == ["gpu:0"] and c.scalar("phase") == "TRAIN"
    assert names(spec) == ["conv1", "relu1", "norm1", "pool1", "fc"]
    f = [f for f in spec.items if f.key == "layer"][2]
    assert f.notes[0][0] == "replacing layer 'norm1'" and f.span.line == 8


def test_replace_without_type_overrides_fields():
    spec = R(NET + 'replace "norm1" { local_size: 3 }\n')
    assert plain(get(spec, "norm1")) == [("name", "norm1"), ("type", "LRN"), ("bottom", "conv1"),
                                         ("top", "norm1"), ("local_size", 3), ("alpha", 1)]


def test_replace_with_a_group():
    spec = R(NET + """\
group bnrelu(eps = 0.1) {
  layer { name: "bn" type: BatchNorm bottom: $bottom eps: $eps }
  layer { name: "relu" type: ReLU bottom: "bn" top: "bn" }
}
replace "norm1" { type: bnrelu(0.5) }
""")
    w = wiring(spec)
    assert w[2:5] == [("norm1/bn", ["conv1"], ["norm1"]), ("norm1/relu", ["norm1"], ["norm1"]),
                      ("pool1", ["norm1"], ["pool1"])]
    assert get(spec, "norm1/bn").scalar("eps") == 0.5


def test_update_replaces_all_occurrences():
    spec = R(NET + 'update "pool1" { stride: 1 kernel_size: 2 }\n')
    assert plain(get(spec, "pool1")) == [("name", "pool1"), ("type", "Pooling"),
                                         ("bottom", "norm1"), ("top", "pool1"), ("stride", 1),
                                         ("kernel_size", 2)]


def test_remove_rewires_readers():
    spec = R(NET + 'remove "norm1"\n')
    assert wiring(spec) == [("conv1", ["data"], ["conv1"]), ("relu1", ["conv1"], ["conv1"]),
                            ("pool1", ["conv1"], ["pool1"]), ("fc", ["pool1"], ["fc"])]


def test_remove_in_place_needs_no_rewiring():
    spec = R(NET + 'remove "relu1"\n')
    assert wiring(spec)[1] == ("norm1", ["conv1"], ["norm1"])


def test_remove_stops_at_an_in_place_rewriter():
    spec = R(NET + 'remove "conv1"\n')
    # relu1 reads the data instead and now makes blob conv1, which norm1 still reads
    assert wiring(spec)[:2] == [("relu1", ["data"], ["conv1"]), ("norm1", ["conv1"], ["norm1"])]


def test_remove_implicit_bottoms():
    spec = R("""\
layer { name: "a" type: Input top: "a" }
layer { name: "side" type: ReLU bottom: "a" top: "side" }
layer { name: "b" type: ReLU bottom: "a" top: "b" }
layer { name: "c" type: ReLU bottom: "side" }
layer { name: "d" type: ReLU }
remove "c"
""")
    # d read c by default; it must now read c's bottom explicitly
    assert wiring(spec)[-1] == ("d", ["side"], [])


def test_remove_unpaired_is_an_error():
    e = err("""\
layer { name: "d" type: Data top: "x" top: "y" }
layer { name: "r" type: ReLU bottom: "x" }
remove "d"
""")
    assert e.message == ("cannot remove 'd': layer 'r' reads its top 'x', and 'd' has 0 "
                         "bottom(s) for 2 top(s), which cannot be paired")
    assert at(e) == (3, 8) and e.hint == "remove or update 'r' first"
    # nobody reads an accuracy layer: removing it is fine
    spec = R("""\
layer { name: "acc" type: Accuracy bottom: "fc" bottom: "label" }
layer { name: "x" type: ReLU bottom: "fc" }
remove "acc"
""")
    assert names(spec) == ["x"]


def test_remove_all_same_named_layers():
    spec = R('layer { name: "d" phase: TRAIN }\nlayer { name: "d" phase: TEST }\n'
             'layer { name: "e" }\nremove "d"\n')
    assert names(spec) == ["e"]


def test_insert_after_chains_and_moves_readers():
    spec = R(NET + """\
insert after "conv1" {
  layer { name: "bn1" type: BatchNorm }
  layer { name: "scale1" type: Scale }
}
""")
    assert wiring(spec)[:5] == [
        ("conv1", ["data"], ["conv1"]),
        ("bn1", ["conv1"], ["bn1"]),
        ("scale1", ["bn1"], ["scale1"]),
        ("relu1", ["scale1"], ["scale1"]),
        ("norm1", ["scale1"], ["norm1"]),
    ]


def test_insert_in_place_needs_no_rewiring():
    spec = R(NET + 'insert after "relu1" { layer { name: "drop" type: Dropout top: "conv1" } }\n')
    assert wiring(spec)[2:4] == [("drop", ["conv1"], ["conv1"]), ("norm1", ["conv1"], ["norm1"])]


def test_insert_before():
    spec = R(NET + 'insert before "pool1" { layer { name: "pad" type: Pad } }\n')
    assert wiring(spec)[3:6] == [("pad", ["norm1"], ["pad"]), ("pool1", ["pad"], ["pool1"]),
                                 ("fc", ["pool1"], ["fc"])]


def test_insert_a_group_instance_and_repeat():
    spec = R(NET + """\
group bn() { layer { name: "n" type: BatchNorm bottom: $bottom } }
insert after "pool1" {
  layer { name: "b" type: bn }
  repeat 2 as i { layer { name: "r${i}" type: ReLU } }
}
""")
    assert wiring(spec)[4:] == [("b/n", ["pool1"], []), ("r0", ["b/n"], ["r0"]),
                                ("r1", ["r0"], ["r1"]), ("fc", ["r1"], ["fc"])]


def test_edits_look_through_instance_names():
    spec = R(TOWER + """\
layer { name: "t1" type: tower width: 8 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
insert after "t1/pool" { layer { name: "bn" type: BatchNorm } }
""")
    assert wiring(spec)[-2:] == [("bn", ["t1/pool"], ["bn"]), ("fc", ["bn"], [])]
    spec = R(TOWER + """\
layer { name: "t1" type: tower width: 8 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
remove "t1/pool"
""")
    assert wiring(spec)[-1] == ("fc", ["t1/conv"], [])


def test_imported_edits_do_not_pin_instance_outputs(tmp_path):
    lib = TOWER + """\
layer { name: "t1" type: tower bottom: "data" width: 16 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
update "fc" { num_output: 10 }
"""
    spec = RF(tmp_path, {"lib.net": lib, "main.net":
                         'import "lib.net"\nlayer { name: "t1" type: Pooling bottom: "data" }\n'})
    assert wiring(spec) == [("t1", ["data"], []), ("fc", ["t1"], [])]


def test_edit_target_missing():
    e = err(NET + '\nreplace "norm2" { type: BatchNorm }\n')
    assert e.message == "replace: no layer named 'norm2'" and at(e) == (9, 9)
    assert e.hint == "did you mean 'norm1'?"
    e = err(NET + 'insert after "pool" { layer { name: "x" } }\n')
    assert e.message == "insert after: no layer named 'pool'" and at(e) == (8, 14)
    e = err(TOWER + 'layer { name: "t" type: tower width: 8 }\nremove "t"\n')
    assert "'t' is a group instance" in (e.hint or "") and "'t/conv'" in (e.hint or "")


def test_edits_on_group_and_repeat_layers_with_interpolated_target():
    spec = R(TOWER + """\
let which = 1
repeat 2 as i { layer { name: "t${i}" type: tower width: 8 } }
update "t${which}/conv" { num_output: 99 }
remove "t0/relu"
""")
    assert get(spec, "t1/conv").scalar("num_output") == 99
    assert "t0/relu" not in names(spec)
