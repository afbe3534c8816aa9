"""``netdsl train``, ``test`` and ``time``: the runtime's commands (Caffe's ``caffe
train``, ``caffe test``, ``caffe time``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .cli_args import (
    device_map,
    input_arg,
    net_args,
    nonfinite_arg,
    positive,
    run_args,
    spec_args,
    speed,
    speed_args,
)
from .runtime.signals import EFFECTS  # the standard library only: no torch at start

__all__ = ["add_run_parsers"]


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a spec from its solver and data sections",
                       description="Caffe's `caffe train`: the solver section's update rule, "
                       "lr policy, tests and snapshots. Ctrl-C finishes the iteration, "
                       "snapshots and exits 130; --resume latest continues exactly there. "
                       "SIGHUP snapshots and goes on. A NaN or infinite loss stops the run "
                       "(exit 1) at the next display, the last good snapshot kept.")
    spec_args(p)
    run_args(p)
    input_arg(p)
    p.add_argument("--resume", default=None, metavar="latest|PATH",
                   help="continue from the newest snapshot, or a given one")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="fine-tune from a .safetensors or .caffemodel file")
    p.add_argument("--tensorboard", dest="tensorboard_dir", default=None, metavar="DIR",
                   help="also write the scalars as TensorBoard events (needs tensorboard)")
    p.add_argument("--test-data", dest="test_data_path", default=None, metavar="PATH",
                   help="where the TEST data is (default: as --data)")
    speed_args(p)
    nonfinite_arg(p)
    p.add_argument("--allow-nan", action="store_true",
                   help="carry on after a NaN or infinite loss (default: stop, exit 1)")
    for sig, default in (("sigint", "stop"), ("sighup", "snapshot")):
        p.add_argument(f"--{sig}_effect", f"--{sig}-effect", dest=f"{sig}_effect",
                       choices=list(EFFECTS), default=default, metavar="EFFECT",
                       help=f"what {sig.upper()} does: stop (snapshot and stop), snapshot "
                       f"(and go on) or none (default: {default}, as Caffe)")
    p.add_argument("--on-bad-image", choices=["skip", "fail"], default="skip",
                   help="an image that cannot be read: replace it by the next readable one "
                   "and report it at the end (default), or stop with its name")
    p.add_argument("--sync-batchnorm", action="store_true", default=None,
                   help="with several processes, BatchNorm statistics over the global batch")
    g = p.add_argument_group("several processes (as torchrun takes them)")
    g.add_argument("--nproc", type=positive, default=None, metavar="N",
                   help="data-parallel processes on this machine (one per GPU is usual)")
    g.add_argument("--nnodes", type=positive, default=1, metavar="M", help="machines")
    g.add_argument("--node-rank", type=int, default=0, metavar="R",
                   help="this machine's number, 0 to M-1")
    g.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="where the machines meet (machine 0's address)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if (args.nproc or args.nnodes > 1) and "LOCAL_RANK" not in os.environ:
        from netdsl.runtime.distributed import launch, without_launch_flags

        return launch(without_launch_flags(args.argv), args.nproc or 1, args.nnodes,
                      args.node_rank, args.rdzv_endpoint)
    from netdsl.runtime.train import train

    devices = device_map(args.devices) if args.devices else None
    result = train(args.spec, overrides=dict(args.overrides), devices=devices,
                   data_path=args.data_path, resume=args.resume, weights=args.weights,
                   fmt=args.format, tensorboard_dir=args.tensorboard_dir,
                   test_data_path=args.test_data_path, workers=args.workers,
                   sync_batchnorm=args.sync_batchnorm, on_bad_image=args.on_bad_image,
                   allow_nonfinite=args.allow_nonfinite, inputs=dict(args.inputs) or None,
                   allow_nan=args.allow_nan, sigint_effect=args.sigint_effect,
                   sighup_effect=args.sighup_effect, **speed(args))
    return int(result.get("status", 0))


def _test_parser(sub: Any) -> None:
    p = sub.add_parser("test", help="top-1, top-5 and loss of weights on the test set",
                       description="Caffe's `caffe test`, by default one pass over the test "
                       "set; --crops 10 averages the 4 corner and centre crops and, for a "
                       "net trained with mirroring, their mirrors (AlexNet's test). Every "
                       "number is a fraction.")
    spec_args(p)
    run_args(p)
    input_arg(p)
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="the weights to test (default: the fillers' initial weights)")
    p.add_argument("--iterations", type=positive, default=None, metavar="N",
                   help="test N batches (default: one pass over the test set)")
    p.add_argument("--crops", type=int, choices=[1, 10], default=None,
                   help="1 centre crop, or 10 (default: the data's test_crops)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="with --crops 10, add the mirrored crops (default: if the TRAIN "
                   "data is mirrored)")
    nonfinite_arg(p)
    speed_args(p)
    p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from netdsl.runtime.evaluate import test

    devices = device_map(args.devices) if args.devices else None
    test(args.spec, weights=args.weights, crops=args.crops, overrides=dict(args.overrides),
         devices=devices, data_path=args.data_path, fmt=args.format, workers=args.workers,
         allow_nonfinite=args.allow_nonfinite, iterations=args.iterations,
         mirror=args.mirror, inputs=dict(args.inputs) or None, **speed(args))
    return 0


def _time_parser(sub: Any) -> None:
    p = sub.add_parser("time", help="per-layer forward and backward time, as caffe time",
                       description="Times each layer's forward and backward pass on synthetic "
                       "inputs of the net's shapes.")
    spec_args(p)
    p.add_argument("--iterations", type=positive, default=50)
    net_args(p, phase="train")
    p.add_argument("--devices", default=None, metavar="LOGICAL=DEVICE,...")
    p.add_argument("--format", choices=["rich", "json"], default="rich")
    speed_args(p, workers=False)
    p.set_defaults(func=cmd_time)


def cmd_time(args: argparse.Namespace) -> int:
    from netdsl.runtime.evaluate import time

    devices = device_map(args.devices) if args.devices else None
    time(args.spec, iterations=args.iterations, batch=args.batch, devices=devices,
         fmt=args.format, overrides=dict(args.overrides), phase=args.phase,
         inputs=dict(args.inputs) or None, **speed(args))
    return 0


def add_run_parsers(sub: Any) -> None:
    """``train``, ``test`` and ``time``."""
    for add in (_train_parser, _test_parser, _time_parser):
        add(sub)
