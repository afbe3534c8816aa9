"""A NaN or infinite loss stops training at the next display (exit 1, one message, the
last good snapshot kept); --allow-nan carries on; the check costs no sync per iteration;
a test pass on NaN scores reports NaN accuracy."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from netdsl.cli import main
from netdsl.runtime.guard import LossGuard
from netdsl.runtime.train import Trainer
from tests.runtime.helpers import write_spec

pytestmark = pytest.mark.usefixtures("one_thread")

#: lr 1e8 makes the tiny net's loss NaN after a few iterations (seeded: always the same).
DIVERGE = ["--set", "solver.base_lr=1e8", "--set", "solver.display=1",
           "--set", "solver.snapshot=2", "--devices", "cpu", "--workers", "0"]


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_spec(tmp_path / "tiny.net")


def _snapshots(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("tiny_iter_*.safetensors")
                  if (m := re.fullmatch(r"tiny_iter_(\d+)\.safetensors", p.name)))


def test_nan_loss_stops_with_a_message(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(spec), "--format", "json", *DIVERGE]) == 1
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    stop = records[-1]
    assert stop["event"] == "nonfinite"
    it = stop["iter"]
    shown = [r for r in records if r.get("phase") == "train"]
    assert shown[-1]["iter"] == it and shown[-1]["loss"] is None  # NaN is null in JSON
    last = [r for r in shown if r["loss"] is not None][-1]
    assert "Traceback" not in err
    assert f"the loss is NaN or infinite at iteration {it} (lr 1e+08)" in err
    assert f"the last finite loss was {last['loss']:.6g} at iteration {last['iter']}" in err
    assert "learning rate too high" in err and "--allow-nan" in err
    # only snapshots from before the NaN, the newest named in the message
    snaps = _snapshots(spec.parent / "snaps")
    assert snaps and max(snaps) <= it and all(s % 2 == 0 for s in snaps)
    assert f"snaps/tiny_iter_{max(snaps)}.safetensors (iteration {max(snaps)}" in err
    assert stop["path"] == f"snaps/tiny_iter_{max(snaps)}.safetensors"


def test_nan_without_display_stops_before_the_snapshot(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """display 0: the check runs before each snapshot; no NaN weights are written."""
    argv = ["train", str(spec), "--format", "json", *DIVERGE, "--set", "solver.display=0",
            "--set", "solver.snapshot=6"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no snapshot was written" in err and "iteration 6" in err
    assert _snapshots(spec.parent / "snaps") == []


def test_infinite_input_stops_at_the_first_display(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(spec), "--set", "data.scale=inf", "--devices", "cpu",
                 "--workers", "0", "--set", "solver.display=1"]) == 1
    err = capsys.readouterr().err
    assert "at iteration 0" in err and "no finite loss was displayed" in err
    assert "data" in err and "Traceback" not in err


def test_allow_nan_carries_on(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(spec), "--format", "json", *DIVERGE, "--allow-nan"]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1]["event"] == "done" and records[-1]["iter"] == 12
    assert "carrying on (--allow-nan)" in err
    assert err.count("carrying on") == 1
    assert 12 in _snapshots(spec.parent / "snaps")
    # the test pass on the NaN net: NaN accuracy, not 1.0
    test = [r for r in records if r.get("phase") == "test"][-1]
    assert test["accuracy"] is None and test["loss"] is None


def test_the_guard_does_not_sync_per_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    """LossGuard.add is device ops only: no .item(), no bool() of a tensor."""
    guard = LossGuard()

    def no_sync(*args: object) -> None:
        raise AssertionError("a host sync")

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "item", no_sync)
        m.setattr(torch.Tensor, "__bool__", no_sync)
        for v in (1.0, math.nan, 2.0):
            guard.add(torch.tensor(v))
    assert guard.tripped() and not guard.tripped()  # read once, then cleared
    guard.add(torch.tensor(math.inf))
    assert guard.tripped()


def test_trainer_test_reports_nan_accuracy(spec: Path) -> None:
    trainer = Trainer(spec, devices="cpu", workers=0)
    try:
        with torch.no_grad():
            trainer.net.state_dict()["fc2.weight"].fill_(math.nan)
        means = trainer.test(2)
    finally:
        trainer.feeder.close()
    assert math.isnan(means["accuracy"]) and math.isnan(means["loss"])


def test_testing_without_a_test_net_is_a_diagnostic(spec: Path) -> None:
    """``Trainer.test`` on a run with no TEST net says so (it was a bare assertion)."""
    from netdsl.diagnostics import DataError

    trainer = Trainer(spec, devices="cpu")
    trainer.test_net = None
    with pytest.raises(DataError, match="no TEST phase"):
        trainer.test(1)

