"""netdsl.runtime.snapshot: crash-safe, checksummed snapshot pairs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.diagnostics import DataError, render
from netdsl.runtime import snapshot as S


def make(seed: int = 0) -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(seed)
    weights = {"conv1.weight": torch.randn(4, 3, 3, 3, generator=g), "conv1.bias": torch.zeros(4)}
    solver = {"history.conv1.weight": torch.randn(4, 3, 3, 3, generator=g)}
    state = {"iter": seed, "lr_policy": {"current_step": 2}, "data": {"epoch": 1, "pos": 640}}
    return weights, solver, state


def write(prefix: Path | str, it: int, net: str = "lenet") -> Path:
    w, s, st = make(it)
    return S.write_snapshot(prefix, it, w, s, {**st, "iter": it}, net)


def _error(fn, *args, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args, **kw)
    return info.value


def test_round_trip_with_rng(tmp_path: Path) -> None:
    prefix = tmp_path / "snaps" / "lenet"  # folder is created
    weights, solver, state = make(3)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    rng_state, rng_tensors = S.capture_rng_state()
    expected_draws = (random.random(), np.random.rand(), torch.rand(1).item())

    path = S.write_snapshot(
        str(prefix), 100, weights, {**solver, **rng_tensors}, {**state, "rng": rng_state}, "lenet"
    )
    assert path == tmp_path / "snaps" / "lenet_iter_100.solverstate.safetensors"
    assert (tmp_path / "snaps" / "lenet_iter_100.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [
        "lenet_iter_100.safetensors",
        "lenet_iter_100.solverstate.safetensors",
    ]

    snap = S.read_snapshot(path, net_name="lenet")
    assert snap.iteration == 100 and snap.net_name == "lenet"
    assert snap.state["data"] == {"epoch": 1, "pos": 640}
    for k, v in weights.items():
        assert torch.equal(snap.weights[k], v)
    assert torch.equal(snap.solver_tensors["history.conv1.weight"], solver["history.conv1.weight"])

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    S.restore_rng_state(snap.state["rng"], snap.solver_tensors)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected_draws


def test_either_file_or_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "net"
    write(prefix, 10)
    write(prefix, 20)
    wpath, spath = S.snapshot_paths(prefix, 10)
    assert S.read_snapshot(wpath).iteration == 10
    assert S.read_snapshot(str(spath)).iteration == 10
    assert S.read_snapshot(prefix).iteration == 20  # prefix: the latest complete one


def test_find_latest(tmp_path: Path) -> None:
    prefix = tmp_path / "net"
    assert S.find_latest(prefix) is None
    assert S.find_latest(tmp_path / "missing" / "net") is None
    for it in (5, 100, 20):
        write(prefix, it)
    write(tmp_path / "net_other", 500)  # another prefix: ignored
    (tmp_path / "net_iter_x.solverstate.safetensors").write_bytes(b"")  # not a number
    assert S.find_latest(prefix) == S.snapshot_paths(prefix, 100)[1]
    assert S.find_latest(str(prefix)) == S.snapshot_paths(prefix, 100)[1]


def test_prefix_that_is_a_folder(tmp_path: Path) -> None:
    w, s, st = make(7)
    S.write_snapshot(str(tmp_path) + "/", 7, w, s, st, "lenet")
    assert (tmp_path / "_iter_7.safetensors").is_file()
    assert S.find_latest(str(tmp_path) + "/") == tmp_path / "_iter_7.solverstate.safetensors"


def test_crash_between_writes_keeps_previous(tmp_path: Path, monkeypatch) -> None:
    prefix = tmp_path / "net"
    write(prefix, 1000)
    # Simulated crash, by hand: the newer weights file exists, its solver state does not.
    w, _, _ = make(2000)
    from netdsl.weights import save_weights

    save_weights(S.snapshot_paths(prefix, 2000)[0], w)
    assert S.find_latest(prefix) == S.snapshot_paths(prefix, 1000)[1]
    assert S.read_snapshot(prefix).iteration == 1000
    err = _error(S.read_snapshot, S.snapshot_paths(prefix, 2000)[0])
    assert "incomplete" in err.message
    assert err.span.path == str(S.snapshot_paths(prefix, 2000)[1])

    # Simulated crash inside write_snapshot: the second (solver state) write fails.
    real = S.save_weights
    calls = []

    def flaky(path, tensors, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")
        return real(path, tensors, metadata)

    monkeypatch.setattr(S, "save_weights", flaky)
    with pytest.raises(KeyboardInterrupt):
        write(prefix, 3000)
    monkeypatch.undo()
    assert S.snapshot_paths(prefix, 3000)[0].is_file()
    assert S.find_latest(prefix) == S.snapshot_paths(prefix, 1000)[1]
    assert S.read_snapshot(prefix).iteration == 1000


def test_rewrite_same_iteration(tmp_path: Path) -> None:
    prefix = tmp_path / "net"
    write(prefix, 5)
    w, s, st = make(42)
    S.write_snapshot(prefix, 5, w, s, st, "lenet")
    snap = S.read_snapshot(prefix)
    assert torch.equal(snap.weights["conv1.weight"], w["conv1.weight"])
    assert len(list(tmp_path.iterdir())) == 2


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_weights(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10)
    wpath = S.snapshot_paths(tmp_path / "net", 10)[0]
    _flip(wpath, wpath.stat().st_size - 5)  # inside the tensor data
    err = _error(S.read_snapshot, spath)
    assert err.span.path == str(wpath)
    assert "checksum" in err.message
    assert str(wpath) in render(err)


def test_flipped_byte_in_solver_state(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10)
    _flip(spath, spath.stat().st_size - 5)  # tensor data
    err = _error(S.read_snapshot, spath)
    assert err.span.path == str(spath) and "checksum" in err.message


def test_edited_metadata_in_solver_state(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10)
    data = spath.read_bytes()
    assert b'\\"pos\\": 640' in data
    spath.write_bytes(data.replace(b'\\"pos\\": 640', b'\\"pos\\": 641'))  # same length
    err = _error(S.read_snapshot, spath)
    assert err.span.path == str(spath) and "checksum" in err.message


def test_truncated_solver_state(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10)
    spath.write_bytes(spath.read_bytes()[:-10])
    assert _error(S.read_snapshot, spath).span.path == str(spath)


def test_truncated_weights(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10)
    wpath = S.snapshot_paths(tmp_path / "net", 10)[0]
    wpath.write_bytes(wpath.read_bytes()[:-10])
    assert _error(S.read_snapshot, spath).span.path == str(wpath)


def test_mismatched_pair(tmp_path: Path) -> None:
    prefix = tmp_path / "net"
    write(prefix, 10)
    write(prefix, 20)
    w10, s10 = S.snapshot_paths(prefix, 10)
    w20, _ = S.snapshot_paths(prefix, 20)
    w10.write_bytes(w20.read_bytes())  # weights from another snapshot
    err = _error(S.read_snapshot, s10)
    assert err.span.path == str(w10) and "does not match" in err.message


def test_renamed_files(tmp_path: Path) -> None:
    prefix = tmp_path / "net"
    write(prefix, 10)
    w10, s10 = S.snapshot_paths(prefix, 10)
    w99, s99 = S.snapshot_paths(prefix, 99)
    w10.rename(w99)
    s10.rename(s99)
    err = _error(S.read_snapshot, s99)
    assert "iteration" in err.message and err.span.path == str(s99)


def test_wrong_net_name(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10, net="lenet")
    err = _error(S.read_snapshot, spath, net_name="alexnet")
    assert "'lenet'" in err.message and err.span.path == str(spath)


def test_missing_weights_partner(tmp_path: Path) -> None:
    spath = write(tmp_path / "net", 10)
    wpath = S.snapshot_paths(tmp_path / "net", 10)[0]
    wpath.unlink()
    err = _error(S.read_snapshot, spath)
    assert err.span.path == str(wpath) and "missing" in err.message


def test_nothing_found(tmp_path: Path) -> None:
    err = _error(S.read_snapshot, tmp_path / "net")
    assert "no complete snapshot" in err.message
    err = _error(S.read_snapshot, tmp_path / "net_iter_3.solverstate.safetensors")
    assert "not found" in err.message


def test_plain_weights_file_is_not_a_solver_state(tmp_path: Path) -> None:
    from netdsl.weights import save_weights

    wpath, spath = S.snapshot_paths(tmp_path / "net", 1)
    save_weights(wpath, {"x": torch.zeros(1)})
    save_weights(spath, {"x": torch.zeros(1)})
    err = _error(S.read_snapshot, spath)
    assert "not a netdsl solver state" in err.message
