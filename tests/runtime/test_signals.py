"""Signals during training, as Caffe's --sigint_effect and --sighup_effect: SIGHUP
snapshots and goes on; SIGINT/SIGTERM stop (with a snapshot); each effect can be changed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netdsl.cli import main
from netdsl.runtime import train as train_module
from netdsl.runtime.train import INTERRUPTED, Trainer, train
from tests.runtime.helpers import write_spec
from tests.shared import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = {"solver.test_interval": "0", "solver.test_iter": "0", "solver.display": "0"}


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_spec(tmp_path / "tiny.net")


def test_sighup_snapshots_and_the_run_goes_on(spec: Path) -> None:
    """A real process: SIGHUP after its first display writes a snapshot there, and the run
    still ends at max_iter with exit 0."""
    max_iter = 200
    argv = [sys.executable, "-m", "netdsl", "train", str(spec), "--format", "json",
            "--workers", "0", "--devices", "cpu", "--set", f"solver.max_iter={max_iter}",
            "--set", "solver.display=50", "--set", "solver.test_interval=0",
            "--set", "solver.test_iter=0", "--set", "solver.snapshot=0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, cwd=spec.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    records: list[dict[str, Any]] = []
    sent = False
    for line in proc.stdout:
        records.append(json.loads(line))
        if not sent and records[-1].get("phase") == "train":
            proc.send_signal(signal.SIGHUP)
            sent = True
    rc = proc.wait(timeout=120)
    err = proc.stderr.read() if proc.stderr else ""
    assert rc == 0, err
    snaps = [r for r in records if r.get("event") == "snapshot"]
    assert len(snaps) == 2, records  # the SIGHUP's, then the last one
    assert 0 < snaps[0]["iter"] < max_iter and snaps[1]["iter"] == max_iter
    assert records[-1]["event"] == "done" and records[-1]["iter"] == max_iter
    assert Path(spec.parent / snaps[0]["path"]).is_file()


def _signal_at(monkeypatch: pytest.MonkeyPatch, iteration: int, sig: int) -> None:
    """Send ``sig`` to this process during the step of ``iteration``."""
    step = Trainer.step

    def stepping(self: Trainer) -> Any:
        if self.iteration == iteration:
            os.kill(os.getpid(), sig)
        return step(self)

    monkeypatch.setattr(train_module.Trainer, "step", stepping)


@pytest.mark.parametrize(("sig", "effects", "status", "snapshots"), [
    (signal.SIGHUP, {}, 0, [4, 12]),
    (signal.SIGINT, {}, INTERRUPTED, [4]),
    (signal.SIGTERM, {}, INTERRUPTED, [4]),
    (signal.SIGINT, {"sigint_effect": "snapshot"}, 0, [4, 12]),
    (signal.SIGINT, {"sigint_effect": "none"}, 0, [12]),
    (signal.SIGHUP, {"sighup_effect": "stop"}, INTERRUPTED, [4]),
    (signal.SIGHUP, {"sighup_effect": "none"}, 0, [12]),
])
def test_signal_effects(spec: Path, monkeypatch: pytest.MonkeyPatch, sig: int,
                        effects: dict[str, str], status: int, snapshots: list[int]) -> None:
    _signal_at(monkeypatch, 3, sig)
    before = signal.getsignal(signal.SIGHUP)
    r = train(spec, fmt="none", devices="cpu", workers=0, overrides=QUIET,
              sigint_effect=effects.get("sigint_effect", "stop"),
              sighup_effect=effects.get("sighup_effect", "snapshot"))
    assert r["status"] == status
    found = sorted(int(m.group(1)) for p in (spec.parent / "snaps").iterdir()
                   if (m := re.fullmatch(r"tiny_iter_(\d+)\.safetensors", p.name)))
    assert found == snapshots
    assert signal.getsignal(signal.SIGHUP) is before  # put back


def test_effect_flags_parse(spec: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Caffe's spellings and the dashed ones; a wrong effect is a usage error."""
    assert main(["train", str(spec), "--sighup_effect", "bogus"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    seen: dict[str, Any] = {}

    def fake_train(*args: Any, **kw: Any) -> dict[str, Any]:
        seen.update(kw)
        return {"status": 0}

    monkeypatch.setattr(train_module, "train", fake_train)
    assert main(["train", str(spec), "--sigint-effect", "snapshot"]) == 0
    assert (seen["sigint_effect"], seen["sighup_effect"]) == ("snapshot", "snapshot")
    assert main(["train", str(spec), "--sighup_effect", "none"]) == 0
    assert (seen["sigint_effect"], seen["sighup_effect"]) == ("stop", "none")
