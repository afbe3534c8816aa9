"""Data-parallel training across processes (gloo on the CPU, loopback only): two
processes of batch B train exactly as one process of batch 2B, resume exactly, and a
failing process or Ctrl-C ends every process promptly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from netdsl.weights import load_weights
from tests.runtime.helpers import write_spec
from tests.shared import ROOT

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="this torch has no gloo backend")

SMALL = str(ROOT / "specs" / "alexnet_small.net")
#: 20 iterations of AlexNet-small without dropout (the masks differ by process by design),
#: a snapshot at 10, a test at the end, on the CPU. In double: in float32 the two runs'
#: different summation orders (8 + 8 vs 16) differ in the last bit, and a ReLU or max-pool
#: decision that flips on such a bit sends the runs apart (1e-2 after 20 iterations, as
#: between 1 and 2 threads of one process); in double they agree to 1e-15.
RUN = ["--format", "json", "--devices", "gpu:0=cpu", "--precision", "fp64",
       "--set", "solver.max_iter=20",
       "--set", "solver.snapshot=10", "--set", "solver.test_interval=20",
       "--set", "solver.test_iter=2", "--set", "drop6.dropout_ratio=0",
       "--set", "drop7.dropout_ratio=0", "--workers", "0"]


def netdsl(args: Sequence[str], cwd: Path, timeout: float = 120,
           launcher: Sequence[str] = ("-m", "netdsl")) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *launcher, *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def final(snapshots: Path) -> dict[str, torch.Tensor]:
    return load_weights(snapshots / "s_iter_20.safetensors")


def small(batch: int, prefix: Path) -> list[str]:
    return [SMALL, *RUN, "--set", f"data.batch_size={batch}",
            "--set", f"data.test.batch_size={3 * batch}",
            "--set", f"solver.snapshot_prefix={prefix}/s"]


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Two processes of batch 8 (``--nproc 2``): their snapshots' folder and records."""
    where = tmp_path_factory.mktemp("two")
    run = netdsl(["train", *small(8, where / "snaps"), "--nproc", "2"], where)
    assert run.returncode == 0, run.stderr
    assert "process 1 of 2 (gloo)" in run.stderr and "global batch 16" in run.stderr
    return where / "snaps", records(run.stdout)


def test_two_processes_of_b_equal_one_of_2b(two: tuple[Path, list[dict]],
                                            tmp_path: Path) -> None:
    snaps, recs = two
    start = recs[0]
    assert (start["batch"], start["processes"], start["global_batch"]) == (8, 2, 16)
    assert start["backend"] == "gloo"
    one = netdsl(["train", *small(16, tmp_path / "snaps")], tmp_path)
    assert one.returncode == 0, one.stderr
    a, b = final(snaps), final(tmp_path / "snaps")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    done_two, done_one = recs[-1], records(one.stdout)[-1]
    assert done_two["event"] == done_one["event"] == "done"
    for key in ("loss", "accuracy"):  # the test outputs, reduced over the processes
        assert done_two[key] == pytest.approx(done_one[key], rel=1e-4, abs=1e-6)


def test_resume_with_two_processes_ends_as_the_uninterrupted_run(
        two: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """From the snapshot at 10 to 20, with torchrun as the launcher this time."""
    snaps, _ = two
    (tmp_path / "snaps").mkdir()
    for f in snaps.glob("s_iter_10.*"):
        (tmp_path / "snaps" / f.name).write_bytes(f.read_bytes())
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "netdsl")
    run = netdsl(["train", *small(8, tmp_path / "snaps"), "--resume", "latest"], tmp_path,
                 launcher=torchrun)
    assert run.returncode == 0, run.stderr
    assert records(run.stdout)[0]["iter"] == 10
    a, b = final(snaps), final(tmp_path / "snaps")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)

    alone = netdsl(["train", *small(8, tmp_path / "snaps"), "--resume",
                    str(tmp_path / "snaps" / "s_iter_10.safetensors")], tmp_path)
    assert alone.returncode == 1
    assert "written by a run of 2 process" in alone.stderr and "Traceback" not in alone.stderr


def test_a_failing_process_ends_the_run_with_its_message(tmp_path: Path) -> None:
    """Process 1 meets a corrupt image in its first batch; process 0 is waiting for it."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    lines = []
    for i in range(16):
        path = tmp_path / "imgs" / f"{i:02d}.png"
        if i == 5:  # the 6th sample: the second process's share of the first batch
            path.write_bytes(b"not an image")
        else:
            Image.new("L", (8, 8), 10 * i).save(path)
        lines.append(f"imgs/{path.name} {i % 10}\n")
    (tmp_path / "list.txt").write_text("".join(lines))
    spec = write_spec(tmp_path / "bad.net", dropout=False,
                      data='data { source: "list"  path: "list.txt"  batch_size: 4  '
                           "shuffle: false }")
    t0 = time.monotonic()
    run = netdsl(["train", str(spec), "--devices", "gpu:0=cpu", "--nproc", "2",
                  "--on-bad-image", "fail",
                  "--set", "solver.test_interval=0", "--set", "solver.test_iter=0"],
                 tmp_path, timeout=60)
    assert time.monotonic() - t0 < 30
    assert run.returncode == 1
    assert "process 1 of 2: cannot read image imgs/05.png" in run.stderr
    assert "process 0 of 2 stopped: another process of the run failed" in run.stderr
    assert "Traceback" not in run.stderr


def test_ctrl_c_stops_every_process_with_one_snapshot(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "tiny.net", dropout=False)
    cmd = [sys.executable, "-m", "netdsl", "train", str(spec), "--nproc", "2",
           "--devices", "gpu:0=cpu", "--format", "json", "--set", "solver.max_iter=100000",
           "--set", "solver.display=1", "--set", "solver.test_interval=0",
           "--set", "solver.test_iter=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"phase": "train"' in line:  # training: Ctrl-C, as a terminal sends it
            os.killpg(proc.pid, signal.SIGINT)
            break
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 130, err
    stopped = [r for r in records(out) if r.get("event") == "interrupted"]
    assert len(stopped) == 1
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [
        f"tiny_iter_{stopped[0]['iter']}.safetensors",
        f"tiny_iter_{stopped[0]['iter']}.solverstate.safetensors"]
    assert "Traceback" not in err


BN_NET = """
name: "bn"
input { name: "data"  shape: [1, 8, 8] }
input { name: "label" shape: [] }
layer { name: "conv" type: Convolution bottom: "data" num_output: 6 kernel_size: 3
        weight_filler: gaussian(0.1) }
layer { name: "bn" type: BatchNorm bottom: "conv" top: "conv" }
layer { name: "scale" type: Scale bottom: "conv" top: "conv" bias_term: true }
layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
layer { name: "fc" type: InnerProduct bottom: "conv" num_output: 10
        weight_filler: gaussian(0.1) }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["fc", "label"] }
data { source: "digits"  batch_size: 16 }
solver { base_lr: 0.1  momentum: 0.9  max_iter: 8  snapshot_prefix: "snaps/bn"
         random_seed: 3 }
"""


def test_sync_batchnorm_normalises_with_the_global_batch(tmp_path: Path) -> None:
    """With --sync-batchnorm, two processes of 8 equal one of 16, BatchNorm's running
    statistics included (without it each process normalises with its own 8)."""
    (tmp_path / "bn.net").write_text(BN_NET)
    common = ["train", "bn.net", "--devices", "gpu:0=cpu", "--workers", "0",
              "--precision", "fp64"]
    two = netdsl([*common, "--nproc", "2", "--sync-batchnorm", "--set", "data.batch_size=8",
                  "--set", "solver.snapshot_prefix=two/bn"], tmp_path)
    assert two.returncode == 0, two.stderr
    one = netdsl([*common, "--set", "solver.snapshot_prefix=one/bn"], tmp_path)
    assert one.returncode == 0, one.stderr
    a = load_weights(tmp_path / "two" / "bn_iter_8.safetensors")
    b = load_weights(tmp_path / "one" / "bn_iter_8.safetensors")
    assert any(k.startswith("bn.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_launch_flags_are_checked_and_left_out_of_each_process(
        capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.cli import main
    from netdsl.runtime.distributed import without_launch_flags

    assert main(["train", SMALL, "--nproc", "2", "--nnodes", "2"]) == 2
    assert "several machines need a rendezvous endpoint" in capsys.readouterr().err
    assert main(["train", SMALL, "--nproc", "2", "--nnodes", "2", "--node-rank", "2",
                 "--rdzv-endpoint", "h:1"]) == 2
    assert "--node-rank 2" in capsys.readouterr().err
    argv = ["train", "x.net", "--nproc", "4", "--nnodes=2", "--node-rank", "1",
            "--rdzv-endpoint", "h:29500", "--set", "a=1"]
    assert without_launch_flags(argv) == ["train", "x.net", "--set", "a=1"]
