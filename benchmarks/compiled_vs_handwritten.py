"""Compiled AlexNet vs the same net written by hand in PyTorch, interleaved in one run.

Both nets have the same layers and start from the same weights (the hand-written one
loads the compiled one's ``state_dict()``). For each repetition the two are timed back
to back, in alternating order, on a training step (forward, loss, backward, SGD step)
and on inference (eval, no grad, up to fc8). Medians give images per second; the ratio
compiled / handwritten (1.0 = as fast; the target is >= 0.98 for fp32) is the median of
the per-repetition ratios, which cancels slow drifts in machine load (each pair runs
back to back).

    python benchmarks/compiled_vs_handwritten.py [--iterations 20] [--batch 16]
        [--device cpu|cuda] [--channels-last] [--bf16] [--compile] [--cuda-graphs]
        [--lrn torch|netdsl]

``--compile`` puts both nets through ``torch.compile`` (netdsl's as one whole graph:
``netdsl.compile(..., torch_compile=True)``); ``--cuda-graphs`` also replays them as CUDA
graphs (``torch.compile``'s ``reduce-overhead`` mode; CUDA only).

``--lrn`` picks the hand-written net's LRN: ``torch`` (``nn.LocalResponseNorm``, what a
person writes) or ``netdsl`` (the same kernel the compiled net uses), which isolates the
compiler's own overhead from the LRN kernel's speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl.kernels.lrn import lrn  # noqa: E402
from tests.test_lower import HandAlexNet  # noqa: E402


class CaffeLRN(nn.Module):
    """The LRN kernel netdsl uses, for ``--lrn netdsl``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lrn(x, 5, 5e-4, 0.75, 2.0)


def compiled_alexnet(device: str, **kw: object) -> netdsl.CompiledNet:
    """specs/alexnet.net; its two logical devices land on one device and are fused."""
    return netdsl.compile(ROOT / "specs" / "alexnet.net", "train", devices=device, seed=0,
                          **kw)  # type: ignore[arg-type]


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20, help="timed repetitions of each")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile both nets")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="torch.compile both in reduce-overhead mode (CUDA graphs)")
    ap.add_argument("--lrn", choices=["torch", "netdsl"], default="torch",
                    help="the hand-written net's LRN kernel")
    args = ap.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.cuda_graphs and device.type != "cuda":
        ap.error("--cuda-graphs needs --device cuda")
    dtype = torch.bfloat16 if args.bf16 else None
    comp = compiled_alexnet(args.device, channels_last=args.channels_last, dtype=dtype,
                            torch_compile=args.compile, cuda_graphs=args.cuda_graphs)
    hand = HandAlexNet()  # the test's hand-written AlexNet (tests/test_lower.py)
    if args.lrn == "netdsl":
        hand.norm = CaffeLRN()
    hand.load_state_dict(comp.state_dict())
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    hand = hand.to(device, memory_format=fmt)
    hand_fwd: Callable[[torch.Tensor], torch.Tensor] = hand
    if args.cuda_graphs:
        hand_fwd = torch.compile(hand, mode="reduce-overhead")  # type: ignore[assignment]
    elif args.compile:
        hand_fwd = torch.compile(hand)  # type: ignore[assignment]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    x = torch.randn(args.batch, 3, 227, 227, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    yf = y.float()

    opt_c = torch.optim.SGD(comp.param_groups(0.01, 5e-4), lr=0.01, momentum=0.9)
    opt_h = torch.optim.SGD(hand.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def train_c() -> None:
        opt_c.zero_grad(set_to_none=True)
        out = comp(data=x, label=yf)
        comp.loss(out).backward()
        opt_c.step()

    def train_h() -> None:
        opt_h.zero_grad(set_to_none=True)
        with autocast():
            logits = hand_fwd(x)
        F.cross_entropy(logits.float(), y).backward()
        opt_h.step()

    def infer_c() -> None:
        with torch.inference_mode():
            comp(data=x, outputs=("fc8",))

    def infer_h() -> None:
        with torch.inference_mode(), autocast():
            hand_fwd(x)

    results = {}
    for mode, fc, fh in (("train step", train_c, train_h), ("inference", infer_c, infer_h)):
        training = mode == "train step"
        comp.train(training)
        hand.train(training)
        for _ in range(args.warmup):
            fc()
            fh()
        tc, th = [], []
        for i in range(args.iterations):
            if i % 2:
                tc.append(timed(fc, sync))
                th.append(timed(fh, sync))
            else:
                th.append(timed(fh, sync))
                tc.append(timed(fc, sync))
        mc, mh = statistics.median(tc), statistics.median(th)
        paired = statistics.median(h / c for c, h in zip(tc, th, strict=True))
        results[mode] = (args.batch / mc, args.batch / mh, paired)

    flags = [f for f, on in (("channels_last", args.channels_last), ("bf16", args.bf16),
                             ("torch.compile", args.compile),
                             ("cuda graphs", args.cuda_graphs)) if on] or ["fp32"]
    where = str(device) if device.type != "cpu" else f"{torch.get_num_threads()} threads"
    print(f"AlexNet, batch {args.batch}, {where}, "
          f"{args.iterations} iterations, {'+'.join(flags)}, hand-written LRN: {args.lrn}")
    print(f"{'':12} {'compiled img/s':>15} {'handwritten img/s':>18} {'ratio':>7}")
    for mode, (c, h, r) in results.items():
        print(f"{mode:12} {c:15.1f} {h:18.1f} {r:7.3f}")


if __name__ == "__main__":
    main()
