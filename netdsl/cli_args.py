"""The command line's shared arguments: the spec and its overrides, plugins, the net's
phase, batch and input shapes, devices, data, output format, and how a run uses the
hardware."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["device_map", "input_arg", "input_shape", "kv", "net_args", "nonfinite_arg",
           "positive", "run_args", "spec_args", "speed", "speed_args"]


def kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, dims = kv(text)
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input wants NAME=C,H,W with integers, got '{text}'") from None
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"--input wants positive dims, got '{text}'")
    return name, shape


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return v


def spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .net or Caffe .prototxt file")
    p.add_argument("--set", dest="overrides", action="append", type=kv, default=[],
                   metavar="NAME=VALUE",
                   help="override a variable (width=0.5) or a section field (solver.base_lr=0.1)")
    p.add_argument("--stage", action=_StageAction, metavar="NAME", default=[],
                   help="a stage of Caffe's net state (repeatable; replaces the spec's "
                   "state { stage }): include/exclude { stage: NAME } rules test it")
    p.add_argument("--level", action=_LevelAction, type=int, metavar="N", default=None,
                   help="the level of Caffe's net state (min_level/max_level rules)")
    plugin_arg(p)


class _StageAction(argparse.Action):
    """``--stage NAME``: collects the stages and sets them as ``--set state.stage=[...]``
    does, so that every command's spec is filtered with them."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        import json

        stages = [*getattr(ns, self.dest, []), str(values)]
        setattr(ns, self.dest, stages)
        rest = [kv for kv in getattr(ns, "overrides", []) if kv[0] != "state.stage"]
        ns.overrides = [*rest, ("state.stage", json.dumps(stages))]


class _LevelAction(argparse.Action):
    """``--level N``: ``--set state.level=N``."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(ns, self.dest, int(values))
        rest = [kv for kv in getattr(ns, "overrides", []) if kv[0] != "state.level"]
        ns.overrides = [*rest, ("state.level", str(int(values)))]


def plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: it registers more layer types (repeatable)")


def net_args(p: argparse.ArgumentParser, phase: str | None = None, batch: bool = True) -> None:
    """--phase, --batch and --input: which of the spec's nets, and its input shapes."""
    p.add_argument("--phase", choices=["train", "test"], default=phase,
                   help="which phase's layers (default: "
                   + (phase or "the file's state, else train") + ")")
    if batch:
        p.add_argument("--batch", type=positive, default=None,
                       help="batch size (default: the spec's)")
    input_arg(p)


def input_arg(p: argparse.ArgumentParser) -> None:
    """--input NAME=C,H,W (repeatable): the shape of a data blob the spec cannot know."""
    p.add_argument("--input", dest="inputs", action="append", type=input_shape, default=[],
                   metavar="NAME=C,H,W", help="shape of a data blob the spec cannot know")


def device_map(text: str) -> dict[str, str]:
    from .compiler import parse_device_map

    return parse_device_map(text)


def run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", default=None, metavar="LOGICAL=DEVICE,...",
                   help="map logical devices to torch devices, e.g. gpu:0=cuda:0,gpu:1=cpu "
                   "(default: the CUDA devices round-robin, else the CPU)")
    p.add_argument("--data", dest="data_path", default=None, metavar="PATH",
                   help="where the data is (replaces the spec's data path)")
    p.add_argument("--format", choices=["rich", "json"], default="rich",
                   help="rich progress, or one JSON object per line")


def speed_args(p: argparse.ArgumentParser, workers: bool = True) -> None:
    """How a run uses the hardware (over the spec's ``runtime {}`` and ``data { workers }``)."""
    if workers:
        p.add_argument("--workers", type=int, default=None, metavar="N",
                       help="processes decoding the data (default: the spec's, else one per "
                       "core but one; 0: none)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "fp64"], default=None,
                   help="autocast precision (fp16 with dynamic loss scaling); fp64: the whole "
                   "net in double, as Caffe's Net<double>")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="activations and weights in channels-last memory format")
    p.add_argument("--compile", action="store_true", default=None,
                   help="run the net through torch.compile, as one graph")
    p.add_argument("--cuda-graphs", action="store_true", default=None,
                   help="replay the compiled net as CUDA graphs (CUDA only)")


def speed(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("precision", "channels_last", "compile", "cuda_graphs")
    return {k: getattr(args, k) for k in keys}


def nonfinite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="load weights with NaN or infinite values (refused by default)")
