"""Train the narrow AlexNet (``specs/alexnet_small.net``) on scikit-learn's embedded digits.

Runs ``netdsl.runtime.train.train`` on the spec as written (30 epochs of the 1,437 training
digits scaled to 32x32, tested on the 360 held-out ones), then prints the final test
accuracy and the wall time. Snapshots go to a temporary folder unless ``--keep``.

    python benchmarks/digits.py [--width 0.25] [--epochs 30] [--format rich|json|none]
                                [--threads N] [--devices cpu] [--keep]

``--width`` scales every layer's kernels and neurons (the spec's ``width`` variable),
``--epochs`` replaces the spec's ``max_epochs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl.runtime.train import train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(ROOT / "specs" / "alexnet_small.net"))
    p.add_argument("--width", type=float, default=None, help="the spec's width variable")
    p.add_argument("--epochs", type=float, default=None, help="replaces solver.max_epochs")
    p.add_argument("--format", choices=["rich", "json", "none"], default="rich")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--devices", default=None, help="e.g. cpu or cuda:0 (default: CUDA if any)")
    p.add_argument("--keep", action="store_true", help="keep the snapshots in ./snapshots")
    args = p.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    overrides: dict[str, str] = {}
    if args.width is not None:
        overrides["width"] = str(args.width)
    if args.epochs is not None:
        overrides["solver.max_epochs"] = str(args.epochs)

    spec = os.path.abspath(args.spec)
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="netdsl-digits-") as tmp:
        if not args.keep:
            os.chdir(tmp)  # snapshot_prefix is relative to the current folder
        try:
            start = time.perf_counter()
            result = train(spec, overrides=overrides, devices=args.devices, fmt=args.format)
            wall = time.perf_counter() - start
        finally:
            os.chdir(here)
    summary = {
        "spec": os.path.relpath(spec, here),
        "iterations": result["iter"],
        "accuracy": result.get("accuracy"),
        "top5": result.get("top5"),
        "loss": result.get("loss"),
        "train_seconds": round(result["seconds"], 2),
        "wall_seconds": round(wall, 2),
    }
    if args.format == "json":
        print(json.dumps(summary))
    else:
        acc = summary["accuracy"]
        print(f"final test accuracy: {acc:.4f}" if acc is not None else "no test accuracy")
        print(f"{summary['iterations']} iterations, {summary['train_seconds']} s training, "
              f"{summary['wall_seconds']} s wall (setup included)")
    return int(result.get("status", 0))


if __name__ == "__main__":
    sys.exit(main())
