"""Crafted weight, caffemodel and snapshot files: each refused by name, as a DataError at
the file, before anything of it reaches the net, the optimizer, the loaders or the RNGs.

The file-level fixtures are committed in tests/fixtures/crafted/; each is the output of
its maker below (``test_fixtures_are_what_their_makers_make`` keeps the two together;
``python -m tests.runtime.test_crafted_files`` writes them again). The crafted snapshots
are made by each test from a real snapshot of the tiny net, re-written with
``write_snapshot`` so that their checksums are right and only their content is wrong.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import random
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import netdsl
from netdsl import caffe_pb
from netdsl.cli import main
from netdsl.diagnostics import DataError, render
from netdsl.runtime.snapshot import read_snapshot, snapshot_paths, write_snapshot
from netdsl.runtime.train import Trainer
from netdsl.weights import load_net_weights, read_caffemodel, save_weights
from tests.runtime.helpers import write_spec
from tests.shared import ROOT

CRAFTED = ROOT / "tests" / "fixtures" / "crafted"

# ------------------------------------------------------------------------ the makers


def _blob(dims: list[int] | None = None, values: int = 0, legacy: list[int] | None = None
          ) -> Any:
    b = caffe_pb.BlobProto()
    if legacy is not None:
        b.num, b.channels, b.height, b.width = legacy
    else:
        b.shape.dim.extend(dims or [])
    b.data.extend([0.5] * values)
    return b


def _model(*blobs: Any) -> bytes:
    """A V2 NetParameter with one InnerProduct layer 'fc' carrying ``blobs``."""
    net = caffe_pb.NetParameter(name="crafted")
    layer = net.layer.add(name="fc", type="InnerProduct")
    layer.blobs.extend(blobs)
    return net.SerializeToString()


def _v1_model(blob: Any) -> bytes:
    net = caffe_pb.NetParameter(name="crafted")
    layer = net.layers.add(name="fc", type=14)  # V1 INNER_PRODUCT
    layer.blobs.append(blob)
    return net.SerializeToString()


def _saved(tensors: dict[str, torch.Tensor]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        save_weights(path, tensors)
        return path.read_bytes()


def _torch_zip() -> bytes:
    """The layout of torch.save's zip (archive/data.pkl, a pickle, and its version), at a
    fixed date so that the bytes are always the same."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("archive/data.pkl", pickle.dumps({"fc.weight": [0.5]}, 2)),
                           ("archive/version", b"3\n")]:
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _flipped(data: bytes, offset: int) -> bytes:
    raw = bytearray(data)
    raw[offset] ^= 0x01
    return bytes(raw)


def _header_only(header: dict[str, Any], data: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


_GOOD = _model(_blob([2, 3], 6), _blob([2], 2))

#: name -> (how it is made, what the refusal says). Caffemodels are read with
#: read_caffemodel; .safetensors files are loaded into the tiny net (fc2 is 10 x 16).
FIXTURES: dict[str, tuple[Callable[[], bytes], str]] = {
    # dims whose product is 2**80: beyond int64, and beyond Caffe's INT_MAX per blob
    "dims_overflow.caffemodel": (lambda: _model(_blob([2**40, 2**40], 4)),
                                 "layer 'fc' blob 'weight' (#0) has a dimension of"),
    # 4 x 2**62 = 2**64, which an int64 product wraps to 0, the number of values stored
    "dims_wrap_int64.caffemodel": (lambda: _model(_blob([4, 2**62], 0)), "over Caffe's limit"),
    # dims each within int32 whose product, 2**62, is not
    "count_overflow.caffemodel": (lambda: _model(_blob([2**31 - 1] * 2 + [4], 8)),
                                  "values, over Caffe's limit of 2,147,483,647 per blob"),
    # more data than the dims say
    "more_data.caffemodel": (lambda: _model(_blob([2, 3], 7)),
                             "blob 'weight' (#0) has 7 values but its shape [2, 3] needs 6"),
    "negative_dim.caffemodel": (lambda: _model(_blob([-2, 3], 6)), "negative dimension"),
    "too_many_axes.caffemodel": (lambda: _model(_blob([1] * 33, 1)), "33 axes"),
    # the deprecated num/channels/height/width fields: 65536**4 = 2**64 values
    "legacy_overflow.caffemodel": (lambda: _v1_model(_blob(legacy=[65536] * 4, values=1)),
                                   "layer 'fc' blob 'weight' (#0) has the shape"),
    # a valid model cut inside the weight's data
    "truncated.caffemodel": (lambda: _GOOD[:len(_GOOD) // 2], "protobuf cannot parse it"),
    "not_protobuf.caffemodel": (lambda: b"\x0f" + bytes(range(16)), "protobuf cannot parse it"),
    "prototxt.caffemodel": (lambda: b'name: "tiny"\nlayer { name: "fc" type: "InnerProduct" }\n',
                            "protobuf cannot parse it"),
    # a .pth renamed: protocol-2 pickle (old torch.save) and the zip of today's torch.save
    "pickle.caffemodel": (lambda: pickle.dumps({"fc.weight": [0.5]}, 2), "a Python pickle"),
    "torch_zip.caffemodel": (_torch_zip, "a zip archive"),
    "safetensors.caffemodel": (lambda: _saved({"fc.weight": torch.zeros(2, 3)}),
                               "this is a safetensors file"),
    # weights for the tiny net's fc2.bias (10 values)
    "int_weights.safetensors": (lambda: _saved({"fc2.bias": torch.arange(10)}),
                                "'fc2.bias' is integer (int64) where the net has floating"),
    "bool_weights.safetensors": (lambda: _saved({"fc2.bias": torch.ones(10, dtype=torch.bool)}),
                                 "'fc2.bias' is bool where"),
    "nan_weights.safetensors": (
        lambda: _saved({"fc2.bias": torch.tensor([math.nan, math.inf, -math.inf] + [0.0] * 7)}),
        "'fc2.bias' has 1 NaN and 2 infinite among its 10 values"),
    # a value's byte flipped after netdsl wrote the file with its checksum
    "bad_checksum.safetensors": (
        lambda: _flipped(_saved({"fc2.bias": torch.arange(10.0)}), -3), "checksum"),
    # a header whose shape overflows (safetensors itself refuses it)
    "overflow_header.safetensors": (
        lambda: _header_only({"fc2.bias": {"dtype": "F32", "shape": [2**62, 2**62],
                                           "data_offsets": [0, 8]}}, bytes(8)),
        "not a readable safetensors file"),
}


def write_fixtures(folder: Path = CRAFTED) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (make, _) in FIXTURES.items():
        (folder / name).write_bytes(make())


# ------------------------------------------------------------------- file-level tests


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may be unpickled while these files are read."""
    def refuse(*args: Any, **kw: Any) -> Any:
        raise AssertionError("something was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_fixtures_are_what_their_makers_make() -> None:
    for name, (make, _) in FIXTURES.items():
        assert (CRAFTED / name).read_bytes() == make(), f"run python -m {__name__}: {name}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_spec(tmp_path_factory.mktemp("tiny") / "tiny.net")


def _net(spec: Path) -> Any:
    return netdsl.compile(netdsl.load(spec, "train"), "train", seed=1)


def _state(net: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _refused(fn: Callable[[], Any], path: Path, says: str) -> DataError:
    with pytest.raises(DataError) as info:
        fn()
    e = info.value
    assert e.span.path == str(path), render(e)
    assert says in e.message, render(e)
    assert e.hint, render(e)
    return e


@pytest.mark.usefixtures("no_unpickling")
@pytest.mark.parametrize("name", [n for n in FIXTURES if n.endswith(".caffemodel")])
def test_crafted_caffemodel(name: str, tiny: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    path = CRAFTED / name
    _refused(lambda: read_caffemodel(path), path, FIXTURES[name][1])
    net = _net(tiny)
    before = _state(net)
    _refused(lambda: load_net_weights(net, path, strict=False), path, FIXTURES[name][1])
    assert _same(before, _state(net))
    assert main(["weights", "import", str(path), "-o", str(tmp_path / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert f"\n{path}: error: " in "\n" + err and "Traceback" not in err
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.usefixtures("no_unpickling")
@pytest.mark.parametrize("name", [n for n in FIXTURES if n.endswith(".safetensors")])
def test_crafted_weights(name: str, tiny: Path) -> None:
    path = CRAFTED / name
    net = _net(tiny)
    before = _state(net)
    _refused(lambda: load_net_weights(net, path, strict=False), path, FIXTURES[name][1])
    assert _same(before, _state(net))


def test_nonfinite_weights_load_when_allowed(tiny: Path) -> None:
    net = _net(tiny)
    assert load_net_weights(net, CRAFTED / "nan_weights.safetensors", strict=False,
                            allow_nonfinite=True) == ["fc2.bias"]
    assert torch.isnan(net.state_dict()["fc2.bias"][0])


def test_allow_nonfinite_on_the_command_line(tiny: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """fc2.bias holds a NaN: netdsl test and train refuse it by name, unless told."""
    monkeypatch.chdir(tmp_path)
    weights = _state(_net(tiny))
    weights["fc2.bias"][0] = math.nan
    nan = str(tmp_path / "nan.safetensors")
    save_weights(nan, weights)
    test = ["test", str(tiny), "--weights", nan, "--devices", "cpu", "--format", "json"]
    assert main(test) == 1
    assert "'fc2.bias' has 1 NaN" in capsys.readouterr().err
    assert main([*test, "--allow-nonfinite"]) == 0
    train = ["train", str(tiny), "--weights", nan, "--devices", "cpu", "--format", "json",
             "--set", "solver.max_iter=1"]
    assert main(train) == 1
    assert "--allow-nonfinite" in capsys.readouterr().err
    # loaded, the NaN makes the loss NaN: the run stops there, unless --allow-nan too
    assert main([*train, "--allow-nonfinite"]) == 1
    assert "the loss is NaN or infinite at iteration 0" in capsys.readouterr().err
    assert main([*train, "--allow-nonfinite", "--allow-nan"]) == 0


def test_many_bad_tensors_are_listed(tiny: Path, tmp_path: Path) -> None:
    net = _net(tiny)
    path = tmp_path / "w.safetensors"
    state = {k: torch.full_like(v, math.nan) for k, v in net.state_dict().items()}
    save_weights(path, state)
    before = _state(net)
    e = _refused(lambda: load_net_weights(net, path, strict=True), path,
                 f"{len(state)} tensors, listed below")
    assert _same(before, _state(net))
    assert [n for n, _ in e.notes] == [f"'{k}' has {v.numel():,} NaN among its "
                                       f"{v.numel():,} values" for k, v in state.items()]


def test_snapshot_weights_checked_against_their_solver_state(tiny: Path, tmp_path: Path
                                                             ) -> None:
    """A snapshot's weights file loaded with --weights is checked against the sha256 its
    solver state records, even where the file has no checksum of its own (older files)."""
    net = _net(tiny)
    prefix = tmp_path / "tiny"
    write_snapshot(prefix, 3, net.state_dict(), {}, {}, "tiny")
    wpath, _ = snapshot_paths(prefix, 3)
    other = _net(tiny)
    with torch.no_grad():
        other.state_dict()["fc2.bias"].add_(1)
    raw = _saved(other.state_dict())  # a well-formed file, with its own right checksum
    wpath.write_bytes(raw)
    _refused(lambda: load_net_weights(net, wpath, strict=True), wpath,
             "does not match the checksum that its snapshot's solver state")


# ------------------------------------------------------------------ crafted snapshots


@pytest.fixture(scope="module")
def base(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real snapshot of the tiny net at iteration 2 (solver state path)."""
    prefix = tmp_path_factory.mktemp("base") / "tiny"
    tr = Trainer(tiny, overrides={"solver.snapshot_prefix": str(prefix)})
    tr.step()
    tr.step()
    tr.snapshot()
    tr.feeder.close()
    return snapshot_paths(prefix, 2)[1]


@pytest.fixture(scope="module")
def victim(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trainer]:
    """A fresh trainer that every refused resume must leave exactly as it was."""
    prefix = tmp_path_factory.mktemp("victim") / "tiny"
    tr = Trainer(tiny, overrides={"solver.snapshot_prefix": str(prefix)})
    yield tr
    tr.feeder.close()


def _everything(tr: Trainer) -> dict[str, Any]:
    assert tr.test_loader is not None
    return {
        "net": _state(tr.net), "opt": tr.opt.state_tensors(), "iteration": tr.iteration,
        "feeder": json.dumps(tr.feeder.state()), "test": json.dumps(tr.test_loader.state()),
        "plateau": tr.plateau, "window": list(tr.window), "python": random.getstate(),
        "numpy": json.dumps([np.asarray(x).tolist() for x in np.random.get_state()]),
        "torch": torch.get_rng_state(),
    }


def _equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    for k in a:
        if isinstance(a[k], dict):
            assert _same(a[k], b[k]), k
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def _crafted(base: Path, folder: Path, edit: Callable[[dict[str, Any], dict[str, Any],
                                                       dict[str, Any]], None]) -> Path:
    """The base snapshot with ``edit(weights, tensors, state)`` applied, written anew (so
    its checksums are right) under ``folder``."""
    snap = read_snapshot(base)
    weights, tensors, state = dict(snap.weights), dict(snap.solver_tensors), dict(snap.state)
    edit(weights, tensors, state)
    return write_snapshot(folder / "tiny", snap.iteration, weights, tensors, state, "tiny")


def _set(key: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any], dict[str, Any]],
                                            None]:
    """An edit that sets a tensor (``t:`` key), a JSON path (``a/b/c``) of the state."""
    def edit(w: dict[str, Any], t: dict[str, Any], s: dict[str, Any]) -> None:
        if key.startswith("t:"):
            t[key[2:]] = value
            return
        if key.startswith("w:"):
            w[key[2:]] = value
            return
        *path, last = key.split("/")
        node: Any = s
        for part in path:
            at: Any = int(part) if isinstance(node, list) else part
            node[at] = node[at].copy() if isinstance(node[at], dict | list) else node[at]
            node = node[at]
        node[int(last) if isinstance(node, list) else last] = value
    return edit


HISTORY = "history.0.0.history"  # fc1.weight's momentum (SGD's one slot)

#: id -> (edit, what the refusal says). Each is well-checksummed but inconsistent.
SNAPSHOTS: dict[str, tuple[Any, str]] = {
    "python_rng_short": (_set("rng/python/1", list(range(100))),
                         "python RNG state is not valid: it should hold 624"),
    "python_rng_position": (_set("rng/python/1/624", 999), "position 999 is not in 0..624"),
    "numpy_rng_word": (_set("rng/numpy/1/0", 2**40), "1099511627776 is not a 32-bit word"),
    "numpy_rng_name": (_set("rng/numpy/0", "PCG64"), "numpy RNG state is not valid"),
    "torch_rng_dtype": (_set("t:rng.torch_cpu", torch.zeros(5056, dtype=torch.float32)),
                        "should be a 1-D uint8 tensor, it is float32"),
    "torch_rng_size": (_set("t:rng.torch_cpu", torch.zeros(100, dtype=torch.uint8)),
                       "has 100 bytes"),
    "history_shape": (_set(f"t:{HISTORY}", torch.zeros(16, 63)), "has shape (16, 63)"),
    "history_dtype": (_set(f"t:{HISTORY}", torch.zeros(16, 64, dtype=torch.int64)),
                      f"'{HISTORY}' is integer (int64)"),
    "history_nan": (_set(f"t:{HISTORY}", torch.full((16, 64), math.nan)),
                    f"'{HISTORY}' has 1,024 NaN among its 1,024 values"),
    "weights_inf": (_set("w:fc1.bias", torch.full((16,), math.inf)),
                    "'fc1.bias' has 16 infinite among its 16 values"),
    "solver_iter_negative": (_set("t:iter", torch.tensor(-1)), "taken -1 steps"),
    "state_iteration_negative": (_set("iteration", -1), "training state is of iteration -1"),
    "data_index_outside": (_set("train_loader/index", 10**9),
                           "(epoch 0, sample 1000000000) is outside the data, which has 1437"),
    "data_epoch_negative": (_set("train_loader/epoch", -1), "training data position (epoch -1,"),
    "data_index_not_int": (_set("train_loader/index", 3.5), "has index 3.5, not an integer"),
    "test_data_outside": (_set("test_loader/index", 361),
                          "test data position (epoch 0, sample 361)"),
    "loss_window_nan": (_set("loss_window/0", math.nan), "NaN or infinite"),
    "plateau_negative": (_set("t:plateau.drops", torch.tensor(-2)), "'plateau.drops'"),
}


@pytest.mark.parametrize("case", list(SNAPSHOTS))
def test_crafted_snapshot(case: str, base: Path, victim: Trainer, tmp_path: Path) -> None:
    edit, says = SNAPSHOTS[case]
    spath = _crafted(base, tmp_path, edit)
    before = _everything(victim)
    with pytest.raises(DataError) as info:
        victim.resume(spath)
    e = info.value
    wpath = str(snapshot_paths(tmp_path / "tiny", 2)[0])
    assert e.span.path in (str(spath), wpath), render(e)
    assert says in e.message, render(e)
    assert e.hint, render(e)
    _equal(before, _everything(victim))
    text = render(e)
    assert "Traceback" not in text and e.span.path in text


def test_negative_iteration_in_the_file(base: Path, tmp_path: Path) -> None:
    snap = read_snapshot(base)
    wpath, spath = snapshot_paths(tmp_path / "tiny", 2)
    wpath.write_bytes(snap.weights_path.read_bytes())
    from safetensors import safe_open

    with safe_open(str(base), framework="pt") as f:
        meta = dict(f.metadata())
    meta["iteration"] = "-1"
    odd = tmp_path / "tiny_iter_x.solverstate.safetensors"  # a name without an iteration
    save_weights(odd, snap.solver_tensors, {k: v for k, v in meta.items() if k != "format"})
    (tmp_path / "tiny_iter_x.safetensors").write_bytes(wpath.read_bytes())
    _refused(lambda: read_snapshot(odd), odd, "iteration -1, which is negative")


def test_nonfinite_snapshot_resumes_when_allowed(base: Path, tiny: Path, tmp_path: Path
                                                 ) -> None:
    from netdsl.runtime.checkpoint import resume_from

    spath = _crafted(base, tmp_path, _set(f"t:{HISTORY}", torch.full((16, 64), math.nan)))
    tr = Trainer(tiny, overrides={"solver.snapshot_prefix": str(tmp_path / "other")})
    try:
        assert resume_from(tr, spath, allow_nonfinite=True) == spath
        assert tr.iteration == 2
        assert torch.isnan(tr.opt.state_tensors()[HISTORY]).all()
    finally:
        tr.feeder.close()


def test_a_sound_snapshot_still_resumes(base: Path, tiny: Path, tmp_path: Path) -> None:
    spath = _crafted(base, tmp_path, lambda w, t, s: None)
    tr = Trainer(tiny, overrides={"solver.snapshot_prefix": str(tmp_path / "other")})
    try:
        tr.resume(spath)
        assert tr.iteration == 2
        snap = read_snapshot(base)
        assert _same(_state(tr.net), {k: v for k, v in snap.weights.items()})
    finally:
        tr.feeder.close()


if __name__ == "__main__":
    write_fixtures()
    print(f"wrote {len(FIXTURES)} files to {CRAFTED}")
