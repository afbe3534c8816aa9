"""SIGKILL at any moment of ``netdsl train``, then ``--resume latest``: the run ends bit for
bit as one that was never interrupted, and no temporary file is left behind.

How the test is built (so that ten kills fit in CI's time budget):

* The straight run is ``python -m netdsl train`` in a folder of its own, started first and
  running alongside the rest.
* The killed runs are a chain: each process resumes from the latest snapshot the previous
  one left (``--resume latest``, or from scratch when there is none) and is killed in turn.
  Starting ``python -m netdsl`` costs seconds (torch, scikit-learn, dynamo), so each killed
  run is forked from a driver process that has imported those once, and runs exactly what
  ``python -m netdsl`` runs (``netdsl.cli.main`` with the same arguments).
* The trials come from a fixed seed: which moments are tried is the same on every run of
  the test (where a timed kill lands in the code varies with the machine). Kinds:

  - ``timed``: SIGKILL from the driver a random 0-20 ms after the child reported its k-th
    snapshot: anywhere in a step, a test or a snapshot write;
  - ``startup``: SIGKILL a random 50-400 ms after the fork: while compiling or resuming;
  - ``before-replace`` / ``after-replace``: the child SIGKILLs itself just before (after)
    its n-th rename of a finished file into place: a complete temporary file left behind
    (an orphan weights file, or a complete snapshot);
  - ``torn``: the child writes its n-th file, cuts it to half and SIGKILLs itself: a torn
    temporary file.

* The chain ends with a real ``python -m netdsl train --resume latest`` that runs to the end.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from netdsl.runtime.snapshot import find_latest, read_snapshot
from tests.runtime.helpers import write_spec
from tests.shared import ROOT

pytestmark = pytest.mark.slow

SEED = 20240611
MAX_ITER = 40
PREFIX = "snaps/tiny"
ARGS = ["train", "tiny.net", "--format", "json", "--workers", "0",
        "--set", "solver.snapshot=1", "--set", f"solver.max_iter={MAX_ITER}"]
KINDS = ["timed", "before-replace", "timed", "after-replace", "torn", "startup", "timed",
         "before-replace", "torn", "timed"]
REMOVED = "netdsl: removed stale temporary file {} from an interrupted snapshot"


def plan() -> list[dict[str, Any]]:
    """The trials, from the fixed seed."""
    rng = random.Random(SEED)
    trials: list[dict[str, Any]] = []
    for kind in KINDS:
        if kind == "timed":
            trials.append({"kind": kind, "after": rng.randint(1, 2),
                           "delay": rng.uniform(0.0, 0.02)})
        elif kind == "startup":
            trials.append({"kind": kind, "delay": rng.uniform(0.05, 0.4)})
        else:  # the n-th file this process writes (two per snapshot: weights, solver state)
            trials.append({"kind": kind, "n": rng.randint(1, 4)})
    return trials


# ------------------------------------------------------------------ the driver process


class _KillingOs:
    """``os`` as netdsl.weights sees it in a child: SIGKILL at the trial's moment."""

    def __init__(self, trial: dict[str, Any]) -> None:
        self.trial = trial
        self.replaces = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        self.replaces += 1
        hit = self.replaces == self.trial.get("n")
        if hit and self.trial["kind"] == "before-replace":
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(src, dst)
        if hit and self.trial["kind"] == "after-replace":
            os.kill(os.getpid(), signal.SIGKILL)


def _child(trial: dict[str, Any], argv: list[str]) -> None:
    """The forked child: install the trial's hook, then run the CLI (never returns)."""
    code = 70
    try:
        import netdsl.weights as W
        from netdsl import cli

        W.os = _KillingOs(trial)  # type: ignore[assignment]
        if trial["kind"] == "torn":
            write = W._write_safetensors
            count = [0]

            def torn(fd: int, tensors: Any, metadata: Any) -> None:
                count[0] += 1
                if count[0] != trial["n"]:
                    return write(fd, tensors, metadata)
                write(os.dup(fd), tensors, metadata)  # the whole file, then cut in half
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                os.kill(os.getpid(), signal.SIGKILL)

            W._write_safetensors = torn
        code = cli.main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(folder / p.name) for p in folder.glob(".*.tmp")) if folder.is_dir() else []


def _orphans(folder: Path) -> list[str]:
    """Weights files without their solver state (a snapshot cut between its two files)."""
    weights = [p for p in folder.glob("*_iter_*.safetensors")
               if not p.name.endswith(".solverstate.safetensors")]
    return sorted(str(p) for p in weights
                  if not p.with_name(p.name.replace(".safetensors", ".solverstate.safetensors"))
                  .exists())


def _run_trial(trial: dict[str, Any], index: int) -> dict[str, Any]:
    resume = find_latest(PREFIX) is not None
    argv = ARGS + (["--resume", "latest"] if resume else [])
    err_path = Path(f"trial{index}.err")
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        os.dup2(write_fd, 1)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(err, 2)
        _child(trial, argv)
    os.close(write_fd)
    started = time.monotonic()
    lines: list[str] = []
    with os.fdopen(read_fd, "r") as out:
        if trial["kind"] == "startup":
            time.sleep(trial["delay"])
            os.kill(pid, signal.SIGKILL)
        elif trial["kind"] == "timed":
            seen = 0
            for line in out:
                lines.append(line)
                if '"event": "snapshot"' in line:
                    seen += 1
                    if seen == trial["after"]:
                        time.sleep(trial["delay"])
                        os.kill(pid, signal.SIGKILL)
                        break
        lines += out.readlines()
    _, status = os.waitpid(pid, 0)
    folder = Path(PREFIX).parent
    latest = find_latest(PREFIX)
    verified = read_snapshot(latest).iteration if latest is not None else None
    return {
        "trial": trial, "resumed": resume, "seconds": time.monotonic() - started,
        "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
        "status": status, "latest": verified,
        "temporaries": _temporaries(folder),
        "orphans": _orphans(folder),
        "stderr": err_path.read_text(), "stdout_lines": len(lines),
    }


def driver() -> None:
    """Run the trials (argv[1]: their JSON) in the current folder; print the results."""
    import torch._dynamo  # noqa: F401  # what the first optimizer imports: once, here

    import netdsl
    import netdsl.cli  # noqa: F401
    import netdsl.runtime.train  # noqa: F401
    from netdsl.runtime.data.digits import _load

    _load()  # scikit-learn's digits, cached for every child
    netdsl.load_training("tiny.net")  # the parser, warmed
    results = [_run_trial(t, i) for i, t in enumerate(json.loads(sys.argv[1]))]
    print(json.dumps(results))


# ------------------------------------------------------------------------------ the test


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env["OMP_NUM_THREADS"] = "1"  # the same arithmetic in every process (and no forked pool)
    return env


def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path: Path) -> None:
    t0 = time.monotonic()
    straight, chain = tmp_path / "straight", tmp_path / "chain"
    for folder in (straight, chain):
        folder.mkdir()
        write_spec(folder / "tiny.net")
    env = _env()
    baseline = subprocess.Popen([sys.executable, "-m", "netdsl", *ARGS], cwd=straight, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trials = plan()
    drive = subprocess.run(
        [sys.executable, "-c", "from tests.runtime.test_kill import driver; driver()",
         json.dumps(trials)],
        cwd=chain, env=env, capture_output=True, text=True, timeout=240)
    assert drive.returncode == 0, drive.stderr[-3000:]
    results = json.loads(drive.stdout.splitlines()[-1])
    t_chain = time.monotonic() - t0

    final = subprocess.run([sys.executable, "-m", "netdsl", *ARGS, "--resume", "latest"],
                           cwd=chain, env=env, capture_output=True, text=True, timeout=240)
    assert final.returncode == 0, final.stderr[-3000:]
    b_out, b_err = baseline.communicate(timeout=240)
    assert baseline.returncode == 0, b_err[-3000:]

    # Every trial was killed, and left the latest snapshot readable (read_snapshot verified
    # it in the driver); the chain made progress and never finished early.
    for r in results:
        assert r["killed"], f"not killed by SIGKILL: {r}"
    assert max(r["latest"] or 0 for r in results) < MAX_ITER
    assert results[-1]["latest"] is not None and results[-1]["latest"] > 5

    # The kills left what they were meant to: torn and complete temporary files, orphan
    # weights. Each temporary file is named by a later process as it removes it.
    left = [(i, p) for i, r in enumerate(results) for p in r["temporaries"]]
    assert {results[i]["trial"]["kind"] for i, _ in left} >= {"before-replace", "torn"}
    assert any(r["orphans"] for r in results)
    later_logs = [r["stderr"] for r in results] + [final.stderr]
    for i, path in sorted(set(left)):
        named = any(REMOVED.format(path) in log for log in later_logs[i + 1:])
        # (or a startup kill landed between its removal and the log line)
        gone_at_startup = any(r["trial"]["kind"] == "startup" and path not in r["temporaries"]
                              for r in results[i + 1:])
        assert named or gone_at_startup, (path, i)
    assert not _temporaries(chain / "snaps")
    assert not list((chain / "snaps").glob("*.tmp*")) and not list(chain.glob("snaps/.tmp*"))

    # Bit for bit: the weights, the whole solver state, the last test's numbers.
    name = f"tiny_iter_{MAX_ITER}"
    a = read_snapshot(straight / "snaps" / f"{name}.safetensors", net_name="tiny")
    b = read_snapshot(chain / "snaps" / f"{name}.safetensors", net_name="tiny")
    assert a.weights.keys() == b.weights.keys()
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert a.solver_tensors.keys() == b.solver_tensors.keys()
    assert all(torch.equal(a.solver_tensors[k], b.solver_tensors[k]) for k in a.solver_tensors)
    assert a.state == b.state
    last = [json.loads(text.splitlines()[-1]) for text in (b_out, final.stdout)]
    assert {k: v for k, v in last[0].items() if k != "seconds"} == {
        k: v for k, v in last[1].items() if k != "seconds"}
    print(f"kill test: {len(results)} kills, chain {t_chain:.1f} s, "
          f"total {time.monotonic() - t0:.1f} s; trials "
          + ", ".join(f"{r['trial']['kind']}@{r['latest']}" for r in results))
