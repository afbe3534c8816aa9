"""Benchmark netdsl.kernels.lrn.lrn against torch.nn.functional.local_response_norm.

Shape defaults to AlexNet's norm1 input (16 x 96 x 55 x 55, float32) with its LRN
parameters (local_size 5, alpha 1e-4, beta 0.75, k 1). Torch's ``alpha`` is also
divided by ``size`` (it averages the window), so the same ``alpha`` is passed to both;
the script checks that the outputs and gradients agree before timing. Prints the best
and median of ``--repeat`` interleaved runs, in ms, and torch's best time over ours.

    python benchmarks/lrn.py [--batch 16] [--repeat 20] [--threads N] [--beta 0.75]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netdsl.kernels.lrn import lrn  # noqa: E402


def _time_ms(
    fns: list[Callable[[], object]], repeat: int, warmup: int = 3
) -> list[tuple[float, float]]:
    """(best, median) wall time in ms of each function, run interleaved so that load
    from other processes hits all of them alike; best is the least disturbed figure."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, acc in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return [(min(t) * 1e3, statistics.median(t) * 1e3) for t in times]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels", type=int, default=96)
    ap.add_argument("--spatial", type=int, default=55)
    ap.add_argument("--size", type=int, default=5, help="local_size (odd: torch agrees)")
    ap.add_argument("--alpha", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.75)
    ap.add_argument("--k", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size % 2 == 0:
        ap.error("torch centres even windows differently from Caffe; use an odd --size")

    shape = (args.batch, args.channels, args.spatial, args.spatial)
    params = (args.size, args.alpha, args.beta, args.k)
    torch.manual_seed(0)
    x = torch.randn(shape)
    dy = torch.randn(shape)

    def ours(t: torch.Tensor) -> torch.Tensor:
        return lrn(t, *params)

    def theirs(t: torch.Tensor) -> torch.Tensor:
        return F.local_response_norm(t, args.size, alpha=args.alpha, beta=args.beta, k=args.k)

    # Agreement: exact semantics in float64, rounding level in float32.
    x64 = x[:2].double().requires_grad_()
    y_a, y_b = ours(x64), theirs(x64)
    (g_a,) = torch.autograd.grad(y_a, x64, dy[:2].double())
    (g_b,) = torch.autograd.grad(y_b, x64, dy[:2].double())
    diff64 = (y_a - y_b).abs().max().item()
    gdiff64 = (g_a - g_b).abs().max().item()
    with torch.no_grad():
        y32_a, y32_b = ours(x), theirs(x)
        diff32 = (y32_a - y32_b).abs().max().item()
        rel32 = ((y32_a - y32_b).abs() / y32_b.abs().clamp(min=1e-30)).max().item()
    print(
        f"shape {shape} float32, local_size={args.size} alpha={args.alpha} "
        f"beta={args.beta} k={args.k}, threads={torch.get_num_threads()}"
    )
    print(
        f"max |ours - torch|: float64 out {diff64:.1e}, grad {gdiff64:.1e}; "
        f"float32 out {diff32:.1e} (relative {rel32:.1e})"
    )
    if diff64 > 1e-6 or gdiff64 > 1e-6 or rel32 > 1e-6:
        print("MISMATCH", file=sys.stderr)
        return 1

    def forward(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return fn(x)

        return run

    def forward_backward(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
        xg = x.clone().requires_grad_()

        def run() -> object:
            return torch.autograd.grad(fn(xg), xg, dy)

        return run

    print(f"{'ms (best / median)':18s}{'ours':>16s}{'torch':>16s}{'speed-up':>10s}")
    for name, make in (("forward", forward), ("forward+backward", forward_backward)):
        (o_best, o_med), (t_best, t_med) = _time_ms([make(ours), make(theirs)], args.repeat)
        print(
            f"{name:18s}{o_best:8.1f} /{o_med:6.1f}{t_best:8.1f} /{t_med:6.1f}"
            f"{t_best / o_best:9.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
