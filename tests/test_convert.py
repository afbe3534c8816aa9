"""``netdsl convert``: Caffe prototxt <-> .net, checked by round trips through the loader.

Every Caffe net in ../shared/caffe goes prototxt -> .net -> prototxt, and each step must
give what ``netdsl shapes --format json`` gives for the original (layers, blobs, total
parameters, in both phases) and the same typed layer parameters.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import netdsl
from netdsl import syntax as s
from netdsl.convert import (
    canonical_filler,
    convert,
    net_to_prototxt,
    param_block,
    prototxt_to_net,
)
from netdsl.layers import TYPES
from netdsl.layers.base import Filler, FillerType, VarianceNorm
from netdsl.parse import parse
from netdsl.report import shapes_json
from netdsl.shapes import infer_shapes
from tests.shared import DB_INPUTS, ROOT, SHARED_CAFFE, caffe_params

PHASES = ("train", "test")
SPECS = sorted((ROOT / "specs").glob("*.net"))


def shapes(path: Path, phase: str, inputs: dict[str, tuple[int, ...]] | None = None,
           batch: int | None = None) -> dict[str, Any]:
    """What ``netdsl shapes --format json`` compares on: layers, blobs, parameters."""
    d = shapes_json(infer_shapes(netdsl.load(path, phase), batch, inputs or {}))
    for lay in d["layers"]:
        lay.pop("devices")  # a Caffe net has no devices: --to prototxt drops them
    return {k: d[k] for k in ("batch", "layers", "blobs", "total_params")}


def _canon(v: Any) -> Any:
    if isinstance(v, Filler):
        return canonical_filler(v)
    if dataclasses.is_dataclass(v):
        return dataclasses.replace(v, **{f.name: _canon(getattr(v, f.name))
                                         for f in dataclasses.fields(v)})
    if isinstance(v, tuple):
        return tuple(_canon(x) for x in v)
    return v


def typed(path: Path, phase: str) -> list[tuple[Any, ...]]:
    """Each layer's typed parameters, fillers without the fields their kind ignores."""
    net = netdsl.load(path, phase)
    return [(lay.name, lay.type, _canon(lay.params), lay.param_specs, lay.loss_weights)
            for lay in net.layers]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("proto", caffe_params())
def test_caffe_file_round_trips(proto: Path, tmp_path: Path) -> None:
    inputs = DB_INPUTS.get(proto.name, {})
    net = write(tmp_path, proto.stem + ".net", prototxt_to_net(proto))
    back = write(tmp_path, proto.stem + ".prototxt", net_to_prototxt(net))
    for phase in PHASES:
        want = shapes(proto, phase, inputs)
        assert shapes(net, phase, inputs) == want, f"prototxt -> .net, {phase}"
        assert shapes(back, phase, inputs) == want, f".net -> prototxt, {phase}"
        assert typed(net, phase) == typed(proto, phase)
        assert typed(back, phase) == typed(proto, phase)


@pytest.mark.parametrize("spec", [pytest.param(p, id=p.name) for p in SPECS])
def test_spec_round_trips_through_prototxt(spec: Path, tmp_path: Path) -> None:
    back = write(tmp_path, spec.stem + ".prototxt", convert(spec, "prototxt"))
    text = back.read_text()
    assert "devices" not in text and "solver" not in text
    for phase in PHASES:
        assert shapes(back, phase) == shapes(spec, phase)


def test_per_phase_prototxt_keeps_only_that_phase(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "alexnet.net"
    for phase in PHASES:
        back = write(tmp_path, f"{phase}.prototxt", net_to_prototxt(spec, phase))
        assert "include" not in back.read_text()
        for other in PHASES:
            assert shapes(back, other) == shapes(spec, phase)


# --------------------------------------------------------------------------- readability


@pytest.fixture
def alexnet_net() -> str:
    proto = SHARED_CAFFE / "prototxt" / "bvlc_alexnet__train_val.prototxt"
    if not proto.is_file():
        pytest.skip("shared caffe reference data not present")
    return prototxt_to_net(proto)


def test_net_output_reads_like_netdsl(alexnet_net: str) -> None:
    text = alexnet_net
    assert text.startswith("# Converted from bvlc_alexnet__train_val.prototxt")
    assert "_param" not in text  # convolution_param, data_param... are flattened
    assert "weight_filler: gaussian(0.01)" in text
    assert "bias_filler: constant(0.1)" in text
    assert "weight_filler {" not in text
    assert "type: Convolution" in text and '"Convolution"' not in text
    assert "phase: TEST" in text and "include" not in text
    assert "transform { mirror: true" in text
    assert "param { lr_mult: 1 decay_mult: 1 }  param { lr_mult: 2 decay_mult: 0 }" in text
    # bottoms that are the previous layer's top, tops that are the name: left out
    assert 'layer { name: "relu1"  type: ReLU  top: "conv1" }' in text
    assert 'layer { name: "pool1"  type: Pooling  kernel_size: 3  stride: 2 }' in text
    # defaults left out: pool: MAX, local_size: 5, beta: 0.75, dropout_ratio: 0.5
    assert "pool: MAX" not in text and "local_size" not in text
    assert 'layer { name: "drop6"  type: Dropout  top: "fc6" }' in text
    assert "backend: LMDB" in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_deploy_input_becomes_an_input_block(tmp_path: Path) -> None:
    proto = write(tmp_path, "d.prototxt", 'name: "d"\ninput: "data"\ninput_dim: 10\n'
                  'input_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
                  'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                  'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    text = prototxt_to_net(proto)
    assert 'input { name: "data"  shape: [3, 8, 8]  batch: 10 }' in text
    assert 'layer { name: "c"  type: Convolution  num_output: 4  kernel_size: 3 }' in text


def test_fillers_become_calls_where_equivalent(tmp_path: Path) -> None:
    def conv(name: str, filler: str) -> str:
        return (f'layer {{ name: "{name}" type: "Convolution" bottom: "data" top: "{name}" '
                f'convolution_param {{ num_output: 2 kernel_size: 1 weight_filler {{ {filler} }}'
                ' } }\n')

    proto = write(tmp_path, "f.prototxt", (
        'input: "data" input_shape { dim: 1 dim: 1 dim: 4 dim: 4 }\n'
        + conv("a", 'type: "gaussian" std: 0.01')
        + conv("b", 'type: "gaussian" std: 0.5 mean: 1')
        + conv("c", 'type: "xavier" std: 0.1')
        + conv("d", 'type: "uniform" min: -1 max: 2')
        + conv("e", 'type: "constant" value: 2')
        + conv("f", 'type: "msra" variance_norm: AVERAGE')
        + conv("g", 'type: "gaussian" std: 0.1 sparse: 1')
        + conv("h", 'type: "bilinear"')))
    text = prototxt_to_net(proto)
    for call in ("gaussian(0.01)", "gaussian(0.5, 1)", "xavier()", "uniform(-1, 2)",
                 "constant(2)", "bilinear()"):
        assert f"weight_filler: {call}" in text
    assert 'weight_filler { type: "msra"  variance_norm: AVERAGE }' in text
    assert 'weight_filler { type: "gaussian"  std: 0.1  sparse: 1 }' in text
    net = write(tmp_path, "f.net", text)
    assert typed(net, "train") == typed(proto, "train")
    back = write(tmp_path, "f2.prototxt", net_to_prototxt(net))
    assert 'weight_filler { type: "msra" variance_norm: AVERAGE }' in back.read_text()
    assert typed(back, "train") == typed(proto, "train")


def test_canonical_filler_drops_what_the_kind_ignores() -> None:
    assert canonical_filler(Filler(FillerType.xavier, std=0.1)) == Filler(FillerType.xavier)
    g = Filler(FillerType.gaussian, std=0.1, value=3, variance_norm=VarianceNorm.AVERAGE)
    assert canonical_filler(g) == Filler(FillerType.gaussian, std=0.1)


# --------------------------------------------------------------------------- prototxt output


def _layers(text: str) -> dict[str, s.Block]:
    f = parse(text, "out.prototxt")
    out = {}
    for item in f.items:
        if isinstance(item, s.Field) and item.key == "layer":
            assert isinstance(item.value, s.Block)
            out[str(item.value.scalar("name"))] = item.value
    return out


def test_prototxt_nests_fields_where_caffe_reads_them(tmp_path: Path) -> None:
    spec = write(tmp_path, "n.net", """
name: "n"
devices: ["gpu:0", "gpu:1"]
input { name: "data" shape: [3, 8, 8] }
input { name: "label" shape: [] }
layer { name: "ip" type: InnerProduct bottom: "data" num_output: 5 weight_filler: gaussian(0.01)
        param { lr_mult: 1 } devices: ["gpu:1"] }
layer { name: "act" type: PReLU channel_shared: true }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["act", "label"] axis: 1
        ignore_label: 3 normalization: BATCH_SIZE }
layer { name: "acc" type: Accuracy bottom: ["act", "label"] ignore_label: 3 phase: TEST }
data { batch_size: 4 }
solver { base_lr: 0.1 }
""")
    text = net_to_prototxt(spec)
    layers = _layers(text)
    assert list(layers) == ["data", "label", "ip", "act", "loss", "acc"]
    data = layers["data"]
    assert data.scalar("type") == "Input"
    dims = data.first("input_param").value.first("shape").value  # type: ignore[union-attr]
    assert [f.value.value for f in dims.fields("dim")] == [1, 3, 8, 8]  # type: ignore[union-attr]
    ip = layers["ip"]
    act = layers["act"]  # the implied bottom and top, written out
    assert [str(f.value.value) for f in act.fields("bottom")] == ["ip"]  # type: ignore[union-attr]
    assert [str(f.value.value) for f in act.fields("top")] == ["act"]  # type: ignore[union-attr]
    assert ip.first("devices") is None and ip.first("num_output") is None
    block = ip.first("inner_product_param").value  # type: ignore[union-attr]
    assert block.scalar("num_output") == 5
    assert block.first("weight_filler").value.scalar("type") == "gaussian"  # type: ignore[union-attr]
    assert layers["act"].first("prelu_param") is not None
    loss = layers["loss"]
    assert loss.first("softmax_param").value.scalar("axis") == 1  # type: ignore[union-attr]
    lp = loss.first("loss_param").value  # type: ignore[union-attr]
    assert lp.scalar("ignore_label") == 3 and lp.scalar("normalization") == "BATCH_SIZE"
    acc = layers["acc"]
    assert acc.first("accuracy_param").value.scalar("ignore_label") == 3  # type: ignore[union-attr]
    assert acc.first("include").value.scalar("phase") == "TEST"  # type: ignore[union-attr]
    assert "solver" not in text and "data {" not in text and "devices" not in text
    assert 'type: "InnerProduct"' in text and "normalization: BATCH_SIZE" in text


def test_prototxt_transform_and_enum_strings(tmp_path: Path) -> None:
    spec = write(tmp_path, "d.net", """
layer { name: "d" type: Data top: ["data", "label"] source: "db" backend: "LMDB"
        batch_size: 8 transform { crop_size: 4 mirror: true mean_value: [1, 2, 3] } }
layer { name: "r" type: ReLU bottom: "data" engine: CAFFE }
""")
    text = net_to_prototxt(spec)
    d = _layers(text)["d"]
    assert d.first("transform_param").value.scalar("crop_size") == 4  # type: ignore[union-attr]
    assert [f.value.value for f in d.first("transform_param").value.fields(  # type: ignore[union-attr]
        "mean_value")] == [1, 2, 3]
    assert "backend: LMDB" in text and 'source: "db"' in text and "engine: CAFFE" in text
    assert _layers(text)["r"].first("relu_param") is not None


def test_an_implied_bottom_that_differs_by_phase_makes_one_copy_per_phase(
        tmp_path: Path) -> None:
    spec = write(tmp_path, "p.net", """
input { name: "data" shape: [2] }
layer { name: "a" type: ReLU phase: TRAIN }
layer { name: "b" type: TanH bottom: "data" phase: TEST }
layer { name: "c" type: Sigmoid }
""")
    back = write(tmp_path, "p.prototxt", net_to_prototxt(spec))
    for phase in PHASES:
        assert shapes(back, phase) == shapes(spec, phase)
        assert [lay.bottoms for lay in netdsl.load(back, phase).layers if lay.name == "c"] == [
            ("a",) if phase == "train" else ("b",)]


def test_every_type_has_a_caffe_param_block() -> None:
    blocks = {name: param_block(t) for name, t in TYPES.items()}
    assert blocks["ReLU"] == "relu_param" and blocks["PReLU"] == "prelu_param"
    assert blocks["TanH"] == "tanh_param" and blocks["LRN"] == "lrn_param"
    assert blocks["InnerProduct"] == "inner_product_param"
    assert blocks["BatchNorm"] == "batch_norm_param" and blocks["HDF5Data"] == "hdf5_data_param"
    assert blocks["Deconvolution"] == "convolution_param"
    assert blocks["SoftmaxWithLoss"] == "softmax_param"
    for name, t in TYPES.items():
        assert t.reads_param_block(blocks[name]), name


def test_convert_picks_the_direction_from_the_suffix(tmp_path: Path) -> None:
    proto = write(tmp_path, "x.prototxt", 'input: "data" input_shape { dim: 1 dim: 2 }\n')
    assert convert(proto).startswith("# Converted from x.prototxt")
    net = write(tmp_path, "x.net", convert(proto))
    assert "input_param" in convert(net)
    with pytest.raises(ValueError):
        convert(net, "onnx")


def test_a_field_block_names_a_block_its_type_reads() -> None:
    """A Params field may say which Caffe block it lives in (``metadata["block"]``,
    AnnotatedData's source in data_param); convert writes it there, so the type must
    read that block back."""
    for name, t in TYPES.items():
        for f in dataclasses.fields(t.Params):
            block = f.metadata.get("block")
            if block:
                assert t.reads_param_block(block), (name, f.name, block)


def _round_trip(tmp_path: Path, proto: Path) -> tuple[str, Path, Path]:
    net = write(tmp_path, "n.net", prototxt_to_net(proto))
    back = write(tmp_path, "back.prototxt", net_to_prototxt(net))
    for phase in PHASES:
        assert shapes(net, phase) == shapes(proto, phase)
        assert shapes(back, phase) == shapes(proto, phase)
        assert typed(net, phase) == typed(proto, phase) == typed(back, phase)
    return net.read_text(), net, back


def test_an_input_with_several_shapes_keeps_them(tmp_path: Path) -> None:
    """Two tops, two 4 x 3 shapes: in .net two per-example shapes [[3], [3]], not the
    one shape [3, 3]."""
    proto = write(tmp_path, "i.prototxt",
                  'layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
                  "shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 } } }\n"
                  'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "e" }\n')
    text, net, _ = _round_trip(tmp_path, proto)
    assert "shape: [[3], [3]]  batch: 4" in text
    assert infer_shapes(netdsl.load(net)).blobs["a"] == (4, 3)


LRCN = """name: "lrcn"
input: "x" input_shape { dim: 3 dim: 2 dim: 5 }
input: "cont" input_shape { dim: 3 dim: 2 }
layer { name: "static" type: "Input" top: "x_static" top: "h0"
        input_param { shape { dim: 2 dim: 5 } shape { dim: 1 dim: 2 dim: 4 } } }
layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" top: "lstm"
        recurrent_param { num_output: 4 weight_filler { type: "uniform" min: -0.08 max: 0.08 } } }
"""


def test_caffe_input_shapes_stay_as_written(tmp_path: Path) -> None:
    """An LRCN-style net: x is T x N x F, cont T x N, x_static N x F, h0 1 x N x H. Caffe
    keeps each Input shape as written; so does netdsl (the first dimension is the batch
    only where it is the net's, T here), both ways through convert."""
    proto = write(tmp_path, "lrcn.prototxt", LRCN)
    table = infer_shapes(netdsl.load(proto))
    assert {k: table.blobs[k] for k in ("x", "cont", "x_static", "h0", "lstm")} == {
        "x": (3, 2, 5), "cont": (3, 2), "x_static": (2, 5), "h0": (1, 2, 4),
        "lstm": (3, 2, 4)}
    assert table.total_params == 4 * 4 * (5 + 4) + 4 * 4
    text, _, back = _round_trip(tmp_path, proto)
    assert 'input { name: "x"  shape: [2, 5]  batch: 3 }' in text
    assert "shape: [[2, 5], [1, 2, 4]]  exact: true" in text
    assert "shape { dim: 1 dim: 2 dim: 4 }" in back.read_text()
    # --batch still sets the batch of the inputs that carry the net's batch
    assert infer_shapes(netdsl.load(proto), 6).blobs["x"] == (6, 2, 5)
    assert infer_shapes(netdsl.load(proto), 6).blobs["h0"] == (1, 2, 4)


# --------------------------------------------------------------------- solver.prototxt


SOLVER_SPEC = """
name: "s"
input { name: "data" shape: [1, 4, 4] }
layer { name: "fc" type: InnerProduct bottom: "data" num_output: 2 }
solver { type: Adam base_lr: 0.001 momentum: 0.9 lr_policy: "multistep" gamma: 0.1
         stepvalue: [10, 20] max_iter: 30 warmup_iter: 5 solver_mode: CPU
         snapshot_prefix: "snaps/s" test_initialization: false weight_decay: 5e-4
         net: "old.prototxt" }
"""


def test_convert_writes_the_solver_beside_the_net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.cli import main
    from netdsl.fields import field_spans
    from netdsl.sections import solver_section

    monkeypatch.chdir(tmp_path)
    write(tmp_path, "s.net", SOLVER_SPEC)
    assert main(["convert", "s.net", "-o", "train_val.prototxt"]) == 0
    err = capsys.readouterr().err
    assert "wrote the spec's solver section to solver.prototxt" in err
    assert "left out (netdsl only): warmup_iter" in err
    text = (tmp_path / "solver.prototxt").read_text()
    assert 'net: "train_val.prototxt"' in text and "old.prototxt" not in text
    assert 'type: "Adam"' in text and "solver_mode: CPU" in text
    assert "stepvalue: 10\nstepvalue: 20" in text and "# warmup_iter: 5" in text
    # netdsl reads it back as a Caffe solver file: the same settings, Caffe's fields only
    spec = netdsl.load_spec(tmp_path / "solver.prototxt")
    (block,) = [f.value for f in spec.items if f.key == "solver"]
    assert isinstance(block, s.Block)
    back = solver_section(block)
    want = solver_section(next(f.value for f in netdsl.load_spec(tmp_path / "s.net").items
                               if f.key == "solver"))  # type: ignore[arg-type]
    written = set(field_spans(block.items)) - {"net"}
    assert written == {"type", "base_lr", "momentum", "lr_policy", "gamma", "stepvalue",
                       "max_iter", "solver_mode", "snapshot_prefix", "test_initialization",
                       "weight_decay"}
    assert dataclasses.replace(back, net="") == dataclasses.replace(want, net="", warmup_iter=0)


def test_convert_says_when_it_writes_no_solver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.cli import main

    monkeypatch.chdir(tmp_path)
    write(tmp_path, "s.net", SOLVER_SPEC)
    assert main(["convert", "s.net"]) == 0
    err = capsys.readouterr().err
    assert "without -o the solver section is not written" in err
    assert max(len(line) for line in err.splitlines()) <= 80
    assert main(["convert", "s.net", "-o", "t.prototxt", "--phase", "train"]) == 0
    assert "solver.prototxt not written: with --phase" in capsys.readouterr().err
    write(tmp_path, "solver.prototxt", "base_lr: 1\n")  # the user's own: left alone
    assert main(["convert", "s.net", "-o", "t.prototxt"]) == 0
    assert "it exists and netdsl did not write it" in capsys.readouterr().err
    assert (tmp_path / "solver.prototxt").read_text() == "base_lr: 1\n"
    write(tmp_path, "n.net", SOLVER_SPEC.split("solver {")[0])
    assert main(["convert", "n.net", "-o", "n.prototxt"]) == 0
    assert "not written: the spec has no solver section" in capsys.readouterr().err


def test_plateau_and_epochs_have_no_caffe_field(tmp_path: Path) -> None:
    from netdsl.convert_solver import solver_prototxt

    spec = write(tmp_path, "p.net", SOLVER_SPEC.split("solver {")[0]
                 + 'solver { lr_policy: "plateau" gamma: 0.5 max_epochs: 3 patience: 2 '
                 'test_interval: 10 test_iter: 1 }\n')
    text, notes = solver_prototxt(spec, "p.prototxt")
    assert text is not None
    assert 'lr_policy: "fixed"' in text and '# lr_policy: "plateau"' in text
    assert "# max_epochs: 3.0" in text and "# patience: 2" in text
    assert notes[0] == "left out (netdsl only): lr_policy, max_epochs, patience"
    assert any("set max_iter" in n for n in notes)


def _caffe_solver_parameter() -> Any:
    """caffe.proto's SolverParameter (BVLC/caffe src/caffe/proto/caffe.proto), its
    scalar fields with their numbers and types, as a message class built here, so that
    protobuf's own text parser checks what convert writes (quoting, enums, int64s)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="solver_check.proto", package="check",
                                             syntax="proto2")
    m = fdp.message_type.add(name="SolverParameter")
    for name, values in (("SnapshotFormat", ["HDF5", "BINARYPROTO"]),
                         ("SolverMode", ["CPU", "GPU"]),
                         ("SolverType", ["SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA",
                                         "ADAM"])):
        e = m.enum_type.add(name=name)
        for i, v in enumerate(values):
            e.value.add(name=v, number=i)
    S, I, R, B, E = F.TYPE_STRING, F.TYPE_INT64, F.TYPE_FLOAT, F.TYPE_BOOL, F.TYPE_ENUM
    rep = {"test_net", "test_iter", "stepvalue"}
    enums = {"snapshot_format": "SnapshotFormat", "solver_mode": "SolverMode",
             "solver_type": "SolverType"}
    for name, number, ftype in [
            ("net", 24, S), ("train_net", 1, S), ("test_net", 2, S), ("test_iter", 3, I),
            ("test_interval", 4, I), ("test_compute_loss", 19, B),
            ("test_initialization", 32, B), ("base_lr", 5, R), ("display", 6, I),
            ("average_loss", 33, I), ("max_iter", 7, I), ("iter_size", 36, I),
            ("lr_policy", 8, S), ("gamma", 9, R), ("power", 10, R), ("momentum", 11, R),
            ("weight_decay", 12, R), ("regularization_type", 29, S), ("stepsize", 13, I),
            ("stepvalue", 34, I), ("clip_gradients", 35, R), ("snapshot", 14, I),
            ("snapshot_prefix", 15, S), ("snapshot_diff", 16, B), ("snapshot_format", 37, E),
            ("solver_mode", 17, E), ("device_id", 18, I), ("random_seed", 20, I),
            ("type", 40, S), ("delta", 31, R), ("momentum2", 39, R), ("rms_decay", 38, R),
            ("debug_info", 23, B), ("snapshot_after_train", 28, B), ("solver_type", 30, E),
            ("layer_wise_reduce", 43, B)]:
        f = m.field.add(name=name, number=number, type=ftype,
                        label=F.LABEL_REPEATED if name in rep else F.LABEL_OPTIONAL)
        if name in enums:
            f.type_name = f".check.SolverParameter.{enums[name]}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("check.SolverParameter"))


def test_solver_prototxt_parses_as_caffes_solver_parameter(tmp_path: Path) -> None:
    from google.protobuf import text_format

    from netdsl.convert_solver import solver_prototxt

    spec = write(tmp_path, "all.net", SOLVER_SPEC.split("solver {")[0] + """
solver { type: RMSProp base_lr: 0.01 momentum: 0.0 momentum2: 0.99 delta: 1e-6
         rms_decay: 0.9 weight_decay: 1e-4 regularization_type: "L1" iter_size: 2
         clip_gradients: 10 lr_policy: "step" gamma: 0.5 stepsize: 100 power: 1
         max_iter: 300 test_interval: 50 test_iter: 3 test_initialization: false
         display: 10 average_loss: 5 snapshot: 100 snapshot_prefix: "x/y" random_seed: 7
         solver_mode: GPU device_id: 1 snapshot_after_train: false
         snapshot_format: BINARYPROTO snapshot_diff: false debug_info: false
         test_compute_loss: true layer_wise_reduce: false }
""")
    text, notes = solver_prototxt(spec, "all.prototxt")
    assert text is not None and notes == []
    msg = text_format.Parse(text, _caffe_solver_parameter()())
    assert msg.net == "all.prototxt" and msg.type == "RMSProp"
    assert msg.max_iter == 300 and list(msg.test_iter) == [3] and msg.random_seed == 7
    assert msg.clip_gradients == 10 and msg.regularization_type == "L1"
    assert msg.solver_mode == 1 and not msg.snapshot_after_train
    assert abs(msg.delta - 1e-6) < 1e-12 and msg.layer_wise_reduce is False


# ------------------------------------------------------------------ found by fuzzing


def test_a_layer_after_two_inputs_keeps_its_bottom(tmp_path: Path) -> None:
    """After a run of inputs build implies the first input, so a layer reading the second
    one must say so in the .net (it once read 'data' after the round trip)."""
    proto = write(tmp_path, "two.prototxt", """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }
layer { name: "l0" type: "Input" top: "l0" input_param { shape { dim: 1 dim: 3 dim: 1 } } }
layer { name: "ins" type: "ReLU" bottom: "l0" top: "ins" }
""")
    net = write(tmp_path, "two.net", prototxt_to_net(proto))
    assert 'bottom: "l0"' in net.read_text()
    for phase in PHASES:
        assert shapes(net, phase)["blobs"]["ins"] == [1, 3, 1]


def test_negative_infinity_round_trips(tmp_path: Path) -> None:
    """protobuf's text format writes -inf; netdsl reads it, expands it and writes it."""
    spec = write(tmp_path, "inf.net", 'input { name: "data" shape: [3, 8, 8] }\n'
                 'layer { name: "t" type: Threshold threshold: -inf }\n')
    expanded = write(tmp_path, "expanded.net", netdsl_expand(spec))
    back = write(tmp_path, "inf.prototxt", convert(spec, "prototxt"))
    assert "threshold: -inf" in expanded.read_text() and "threshold: -inf" in back.read_text()
    for path in (spec, expanded, back):
        assert netdsl.load(path, "test").layers[-1].params.threshold == float("-inf")


def netdsl_expand(path: Path) -> str:
    from netdsl.printer import print_spec

    return print_spec(netdsl.load_spec(path), tidy=True)
