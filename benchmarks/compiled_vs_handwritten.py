"""Compiled AlexNet vs the same net written by hand in PyTorch, interleaved in one run.

Both nets have the same layers and start from the same weights (the hand-written one
loads the compiled one's ``state_dict()``). For each repetition the two are timed back
to back, in alternating order, on a training step (forward, loss, backward, SGD step)
and on inference (eval, no grad, up to fc8). Medians give images per second; the ratio
compiled / handwritten (1.0 = as fast; the target is >= 0.98 for fp32) is the median of
the per-repetition ratios, which cancels slow drifts in machine load (each pair runs
back to back).

    python benchmarks/compiled_vs_handwritten.py [--iterations 20] [--batch 16]
        [--channels-last] [--bf16] [--compile] [--lrn torch|netdsl]

``--lrn`` picks the hand-written net's LRN: ``torch`` (``nn.LocalResponseNorm``, what a
person writes) or ``netdsl`` (the same kernel the compiled net uses), which isolates the
compiler's own overhead from the LRN kernel's speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netdsl  # noqa: E402
from netdsl import ops  # noqa: E402

#: specs/alexnet.net without variables, for trees where resolve.py is not there yet.
ALEXNET_FLAT = """
name: "AlexNet"
devices: ["gpu:0", "gpu:1"]
input { name: "data"  shape: [3, 227, 227] }
input { name: "label" shape: [] }
layer { name: "conv1" type: Convolution bottom: "data" num_output: 96 kernel_size: 11 stride: 4
        weight_filler { type: "gaussian" std: 0.01 } }
layer { name: "relu1" type: ReLU bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: LRN bottom: "conv1" local_size: 5 alpha: 5e-4 beta: 0.75 k: 2 }
layer { name: "pool1" type: Pooling bottom: "norm1" pool: MAX kernel_size: 3 stride: 2 }
layer { name: "conv2" type: Convolution bottom: "pool1" num_output: 256 kernel_size: 5 pad: 2
        group: 2 weight_filler { type: "gaussian" std: 0.01 }
        bias_filler { type: "constant" value: 1 } }
layer { name: "relu2" type: ReLU bottom: "conv2" top: "conv2" }
layer { name: "norm2" type: LRN bottom: "conv2" local_size: 5 alpha: 5e-4 beta: 0.75 k: 2 }
layer { name: "pool2" type: Pooling bottom: "norm2" pool: MAX kernel_size: 3 stride: 2 }
layer { name: "conv3" type: Convolution bottom: "pool2" num_output: 384 kernel_size: 3 pad: 1
        weight_filler { type: "gaussian" std: 0.01 } }
layer { name: "relu3" type: ReLU bottom: "conv3" top: "conv3" }
layer { name: "conv4" type: Convolution bottom: "conv3" num_output: 384 kernel_size: 3 pad: 1
        group: 2 weight_filler { type: "gaussian" std: 0.01 }
        bias_filler { type: "constant" value: 1 } }
layer { name: "relu4" type: ReLU bottom: "conv4" top: "conv4" }
layer { name: "conv5" type: Convolution bottom: "conv4" num_output: 256 kernel_size: 3 pad: 1
        group: 2 weight_filler { type: "gaussian" std: 0.01 }
        bias_filler { type: "constant" value: 1 } }
layer { name: "relu5" type: ReLU bottom: "conv5" top: "conv5" }
layer { name: "pool5" type: Pooling bottom: "conv5" pool: MAX kernel_size: 3 stride: 2 }
layer { name: "fc6" type: InnerProduct bottom: "pool5" num_output: 4096
        weight_filler { type: "gaussian" std: 0.005 } bias_filler { type: "constant" value: 1 } }
layer { name: "relu6" type: ReLU bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: Dropout bottom: "fc6" top: "fc6" dropout_ratio: 0.5 }
layer { name: "fc7" type: InnerProduct bottom: "fc6" num_output: 4096
        weight_filler { type: "gaussian" std: 0.005 } bias_filler { type: "constant" value: 1 } }
layer { name: "relu7" type: ReLU bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: Dropout bottom: "fc7" top: "fc7" dropout_ratio: 0.5 }
layer { name: "fc8" type: InnerProduct bottom: "fc7" num_output: 1000
        weight_filler { type: "gaussian" std: 0.01 } }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["fc8", "label"] }
"""


class CaffeLRN(nn.Module):
    """The LRN kernel netdsl uses, for ``--lrn netdsl``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.lrn(x, 5, 5e-4, 0.75, 2.0)


class HandAlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012) as one would write it in PyTorch."""

    def __init__(self, lrn: str = "torch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)
        # torch's alpha is divided by the size too, like Caffe's: the same numbers.
        self.norm = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0) if lrn == "torch" \
            else CaffeLRN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.norm(F.relu(self.conv1(x), inplace=True)), 3, 2)
        x = F.max_pool2d(self.norm(F.relu(self.conv2(x), inplace=True)), 3, 2)
        x = F.relu(self.conv3(x), inplace=True)
        x = F.relu(self.conv4(x), inplace=True)
        x = F.max_pool2d(F.relu(self.conv5(x), inplace=True), 3, 2)
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc6(x), inplace=True), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x), inplace=True), 0.5, self.training)
        return self.fc8(x)


def compiled_alexnet(**kw: object) -> netdsl.CompiledNet:
    try:
        net = netdsl.load(ROOT / "specs" / "alexnet.net", "train")
    except ImportError:  # no resolve.py yet: the same net without variables
        from netdsl import syntax
        from netdsl.build import build
        from netdsl.caffe_compat import upgrade
        from netdsl.parse import parse_file

        with tempfile.NamedTemporaryFile("w", suffix=".net", delete=False) as f:
            f.write(ALEXNET_FLAT)
        file = parse_file(f.name)
        os.unlink(f.name)
        net = build(syntax.Spec(file.path, upgrade(file).items), "train")
    return netdsl.compile(net, devices="cpu", seed=0, **kw)  # type: ignore[arg-type]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=20, help="timed repetitions of each")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    ap.add_argument("--compile", action="store_true", help="torch.compile both nets")
    ap.add_argument("--lrn", choices=["torch", "netdsl"], default="torch",
                    help="the hand-written net's LRN kernel")
    args = ap.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.bf16 else None
    comp = compiled_alexnet(channels_last=args.channels_last, dtype=dtype,
                            torch_compile=args.compile)
    hand = HandAlexNet(args.lrn)
    hand.load_state_dict(comp.state_dict())
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    hand = hand.to(memory_format=fmt)
    hand_fwd: Callable[[torch.Tensor], torch.Tensor] = hand
    if args.compile:
        hand_fwd = torch.compile(hand)  # type: ignore[assignment]

    x = torch.randn(args.batch, 3, 227, 227).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,))
    yf = y.float()

    opt_c = torch.optim.SGD(comp.param_groups(0.01, 5e-4), lr=0.01, momentum=0.9)
    opt_h = torch.optim.SGD(hand.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def autocast() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)

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
                tc.append(timed(fc))
                th.append(timed(fh))
            else:
                th.append(timed(fh))
                tc.append(timed(fc))
        mc, mh = statistics.median(tc), statistics.median(th)
        paired = statistics.median(h / c for c, h in zip(tc, th, strict=True))
        results[mode] = (args.batch / mc, args.batch / mh, paired)

    flags = [f for f, on in (("channels_last", args.channels_last), ("bf16", args.bf16),
                             ("torch.compile", args.compile)) if on] or ["fp32"]
    print(f"AlexNet, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.iterations} iterations, {'+'.join(flags)}, hand-written LRN: {args.lrn}")
    print(f"{'':12} {'compiled img/s':>15} {'handwritten img/s':>18} {'ratio':>7}")
    for mode, (c, h, r) in results.items():
        print(f"{mode:12} {c:15.1f} {h:18.1f} {r:7.3f}")


if __name__ == "__main__":
    main()
