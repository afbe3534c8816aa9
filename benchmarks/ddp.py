"""Data-parallel training speed: ``netdsl train --nproc N`` against the same AlexNet
written by hand in PyTorch with ``DistributedDataParallel``, for N = 1, 2, ... processes.

Both sides train on synthetic data with the same per-process batch: netdsl through its
whole runtime (launcher, loader, feeder, Caffe's update rule, DDP over the compiled net),
the hand-written side a fixed batch already on the device, ``nn.CrossEntropyLoss``,
``torch.optim.SGD`` and DDP. Images per second count every process (the global batch);
netdsl's is the median of its logged windows after the first, the hand-written one's the
timed steps after a warm-up. On the CPU the processes share the machine's cores (each
gets ``cores / N`` threads), so more processes cannot be faster there: the ratio that
matters is netdsl / hand-written at each N. On a GPU machine, one process per GPU.

    python benchmarks/ddp.py [--procs 1,2] [--batch 16] [--iters 12] [--device cpu|cuda]
                             [--spec specs/alexnet.net] [--lrn torch|netdsl]

``--lrn netdsl`` gives the hand-written net netdsl's LRN kernel, which isolates the
runtime's cost from the kernel's speed (torch's LocalResponseNorm is ~4x slower on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_lower import HandAlexNet  # noqa: E402


def netdsl_rate(spec: str, procs: int, batch: int, iters: int, device: str) -> float:
    """Global images/s of ``netdsl train`` on synthetic data."""
    display = max(1, iters // 4)
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"data.source": "synthetic", "data.num_samples": str(batch * procs * 8),
                "data.batch_size": str(batch), "solver.max_iter": str(iters + display),
                "solver.display": str(display), "solver.test_interval": "0",
                "solver.test_iter": "0", "solver.lr_policy": "fixed", "solver.random_seed": "1",
                "solver.snapshot_prefix": f"{tmp}/s"}
        cmd = [sys.executable, "-m", "netdsl", "train", spec, "--format", "json",
               "--workers", "0", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
        if device == "cpu":
            cmd += ["--devices", "cpu"]
        if procs > 1:
            cmd += ["--nproc", str(procs)]
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        if run.returncode:
            raise SystemExit(f"netdsl train failed:\n{run.stderr}")
    rates = [r["images_per_s"] for r in map(json.loads, run.stdout.splitlines())
             if r.get("phase") == "train" and r.get("images_per_s")]
    return statistics.median(rates[1:] or rates)


class CaffeLRN(torch.nn.Module):
    """netdsl's LRN kernel, for ``--lrn netdsl`` (like for like with the compiled net)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from netdsl.kernels.lrn import lrn

        return lrn(x, 5, 5e-4, 0.75, 2.0)


def _hand_rank(rank: int, procs: int, batch: int, iters: int, device: str, port: int,
               out: mp.Queue, lrn: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs))
    cuda = device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=procs)
    dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    torch.manual_seed(rank)
    net = HandAlexNet()
    if lrn == "netdsl":
        net.norm = CaffeLRN()
    model = torch.nn.parallel.DistributedDataParallel(net.to(dev))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 227, 227, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    dist.barrier()
    if rank == 0:
        out.put(batch * procs * iters / (time.perf_counter() - t0))
    dist.destroy_process_group()


def hand_rate(procs: int, batch: int, iters: int, device: str, lrn: str) -> float:
    """Global images/s of the hand-written AlexNet in DDP, ``procs`` processes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    mp.start_processes(_hand_rank, args=(procs, batch, iters, device, port, out, lrn),
                       nprocs=procs, start_method="spawn")
    rate: float = out.get()
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "alexnet.net"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--procs", default=None,
                    help="comma-separated process counts (default 1,2; on GPUs 1..#GPUs)")
    ap.add_argument("--batch", type=int, default=None, help="per process; 16 CPU, 128 GPU")
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--lrn", choices=["torch", "netdsl"], default="torch",
                    help="the hand-written net's LRN: nn.LocalResponseNorm, or netdsl's kernel")
    args = ap.parse_args(argv)
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    procs = [int(p) for p in args.procs.split(",")] if args.procs else (
        sorted({1, gpus}) if gpus else [1, 2])
    batch = args.batch or (128 if gpus else 16)
    print(f"{Path(args.spec).name}, batch {batch} per process, {args.device}, "
          f"{os.cpu_count()} cores, hand-written LRN: {args.lrn}")
    print(f"{'procs':>5} {'netdsl img/s':>13} {'hand img/s':>11} {'ratio':>6}")
    for n in procs:
        hand = hand_rate(n, batch, args.iters, args.device, args.lrn)
        ours = netdsl_rate(args.spec, n, batch, args.iters, args.device)
        print(f"{n:>5} {ours:>13.1f} {hand:>11.1f} {ours / hand:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
