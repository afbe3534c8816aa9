"""The training loop against the bare compiled train step: how much the runtime costs.

Both run ``specs/alexnet.net`` (by default) on the same device with the same batch size:

* the loop: ``Trainer.step()`` on ``synthetic`` data: the data pipeline (fetch, the finish
  on the device, the prefetching feeder), the Caffe update rule, the loss bookkeeping;
* the bare step: one fixed batch already on the device, ``net(data, label)``, the loss,
  backward and the same optimizer step; nothing else.

They run interleaved (a chunk of steps of one, then of the other) so that machine load
drifts affect both; the ratio loop / bare (1.0: the runtime costs nothing) is the median
of the per-chunk ratios. The issue's target: >= 0.95.

    python benchmarks/loop.py [--device cpu|cuda] [--batch 16] [--chunks 6] [--steps 3]
                              [--precision fp32|bf16] [--channels-last] [--spec PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl.runtime.train import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "alexnet.net"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 16 on CPU, 128 on GPU")
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="steps per chunk")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 16)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(args.spec, devices=args.device, overrides={
            "data.source": "synthetic", "data.num_samples": str(batch * 8),
            "data.batch_size": str(batch), "data.pca_lighting": "0.1",
            "solver.test_interval": "0", "solver.test_iter": "0", "solver.max_iter": "100000",
            "solver.lr_policy": "fixed",
            "solver.snapshot_prefix": f"{tmp}/s"}, precision=args.precision,
            channels_last=args.channels_last or None)
        net, opt = trainer.net, trainer.opt
        x, y = trainer.feeder.next_batch()  # one batch, finished, on the device
        x, y = x.clone(), y.clone()

        def loop() -> None:
            trainer.step()

        def bare() -> None:
            net.zero_grad(set_to_none=True)
            net.loss(net(**trainer.feeds.inputs(x, y))).backward()
            opt.step(0.01)

        def chunk(fn: object) -> float:
            sync()
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()  # type: ignore[operator]
            sync()
            return (time.perf_counter() - t) / args.steps

        for fn in (loop, bare, loop, bare):  # warm-up (and torch's first-call costs)
            chunk(fn)
        t_loop, t_bare = [], []
        for i in range(args.chunks):
            order = (loop, bare) if i % 2 == 0 else (bare, loop)
            for fn in order:
                (t_loop if fn is loop else t_bare).append(chunk(fn))
        trainer.feeder.close()
    ratio = statistics.median(b / a for a, b in zip(t_loop, t_bare, strict=True))
    print(f"{Path(args.spec).stem}, batch {batch}, {device}, {args.precision}"
          f"{', channels-last' if args.channels_last else ''}, "
          f"{args.chunks} chunks of {args.steps} steps")
    print(f"loop  {batch / statistics.median(t_loop):10.1f} img/s")
    print(f"bare  {batch / statistics.median(t_bare):10.1f} img/s")
    print(f"ratio loop / bare: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
