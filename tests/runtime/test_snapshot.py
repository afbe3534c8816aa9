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


# ------------------------------------------------------------------ temporary files


def _temp(folder: Path, dest: str, pid: int | None) -> Path:
    tag = f"{pid}-0123abcd" if pid is not None else "0123456789ab"
    path = folder / f".{dest}.{tag}.tmp"
    path.write_bytes(b"half a snapshot")
    return path


def _dead_pid() -> int:
    """The pid of a process that has exited (and been waited for)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_stale_temporaries_are_removed_and_named(tmp_path: Path, caplog) -> None:
    import logging
    import os

    dead = _dead_pid()
    stale = [
        _temp(tmp_path, "net_iter_3.safetensors", dead),
        _temp(tmp_path, "net_iter_3.solverstate.safetensors", dead),
        _temp(tmp_path, "net_iter_12.safetensors", None),  # the older name, without a pid
    ]
    kept = [
        _temp(tmp_path, "net_iter_4.safetensors", os.getpid()),  # a live writer's (ours)
        _temp(tmp_path, "net_other_iter_3.safetensors", dead),  # another prefix
        _temp(tmp_path, "net_iter_3.pt", dead),  # not a snapshot file
        _temp(tmp_path, "net_iter_x.safetensors", dead),
    ]
    for name in (".net_iter_3.safetensors.tmp", "net_iter_3.safetensors.tmp",
                 ".net_iter_3.safetensors.1234-0123abcd.tmp.keep", ".tmpAbC123", "notes.txt"):
        kept.append(tmp_path / name)
        kept[-1].write_text("not ours")
    link = tmp_path / f".net_iter_5.safetensors.{dead}-0123abcd.tmp"
    link.symlink_to(tmp_path / "notes.txt")  # a link is never ours
    kept.append(link)
    folder = tmp_path / f".net_iter_6.safetensors.{dead}-0123abcd.tmp"
    folder.mkdir()  # nor a folder
    kept.append(folder)

    with caplog.at_level(logging.INFO, logger="netdsl"):
        removed = S.remove_stale_temporaries(tmp_path / "net")
    assert sorted(removed) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() or p.is_symlink() for p in kept)
    for p in stale:
        assert f"netdsl: removed stale temporary file {p} from an interrupted snapshot" in (
            caplog.text)
    assert S.remove_stale_temporaries(tmp_path / "net") == []
    assert S.remove_stale_temporaries(tmp_path / "missing" / "net") == []


def test_first_snapshot_of_a_prefix_removes_stale_temporaries(tmp_path: Path) -> None:
    prefix = tmp_path / "net"
    stale = _temp(tmp_path, "net_iter_1.safetensors", _dead_pid())
    S._swept.discard(str(prefix))
    write(prefix, 2)
    assert not stale.exists()
    again = _temp(tmp_path, "net_iter_2.safetensors", _dead_pid())
    write(prefix, 3)  # once per prefix and process: a later write does not look again
    assert again.exists()


def test_snapshot_files_get_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            spath = write(tmp_path / f"m{mask:o}" / "net", 1)
        finally:
            os.umask(old)
        wpath = S.snapshot_paths(tmp_path / f"m{mask:o}" / "net", 1)[0]
        for p in (spath, wpath):
            assert stat.S_IMODE(p.stat().st_mode) == mode, (oct(mask), p)


# ----------------------------------------------------------------------- RNG checks


def test_rng_states_are_checked_without_touching_the_generators() -> None:
    state, tensors = S.capture_rng_state()
    S.check_rng_state(state, tensors)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    bad_python = {"python": [3, state["python"][1][:-2] + [2**32, 5], None]}
    bad_numpy = {"numpy": ["MT19937", state["numpy"][1], 625, 0, 0.0]}
    for bad, says in [(bad_python, "4294967296 is not a 32-bit word"),
                      (bad_numpy, "position 625"),
                      ({"python": [2, [0] * 625, None]}, "version 2"),
                      ({"python": "nonsense"}, "not valid")]:
        with pytest.raises(DataError, match=says):
            S.check_rng_state(bad, {})
    with pytest.raises(DataError, match="1-D uint8"):
        S.check_rng_state({}, {"rng.torch_cpu": tensors["rng.torch_cpu"].view(2, -1)})
    with pytest.raises(DataError, match="1-D uint8"):
        S.check_rng_state({}, {"rng.torch_cuda.0": torch.zeros(16)})
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0] and (before[1] == after[1]).all()
    assert torch.equal(before[2], after[2])


def test_snapshot_written_before_checksums_in_weights_still_reads(tmp_path: Path) -> None:
    """Weights files written before netdsl put a checksum in every file: the solver
    state's sha256 of the file is what vouches for them, and it is still checked."""
    from safetensors.torch import save_file

    from netdsl.weights import file_sha256, save_weights

    w, s, st = make(4)
    wpath, spath = S.snapshot_paths(tmp_path / "net", 4)
    save_file(w, str(wpath), metadata={"format": "pt", "netdsl": "weights"})  # as before
    meta = {"netdsl": "solverstate", "snapshot_format": S.FORMAT, "net_name": "lenet",
            "iteration": "4", "state": S.json.dumps(st), "weights_file": wpath.name,
            "weights_sha256": file_sha256(wpath)}
    save_weights(spath, s, meta)
    snap = S.read_snapshot(spath)
    assert torch.equal(snap.weights["conv1.weight"], w["conv1.weight"])
    assert torch.equal(S.load_weights(wpath)["conv1.bias"], w["conv1.bias"])  # alone too
    _flip(wpath, wpath.stat().st_size - 3)
    for read in (S.read_snapshot, S.load_weights):
        err = _error(read, wpath)
        assert err.span.path == str(wpath) and "match" in err.message
