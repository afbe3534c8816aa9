"""Stage 12: the command line. ``main(argv) -> exit code``.

Every user error is a NetdslError rendered as ``file:line:col: error: ...`` on stderr,
exit status 1 (2 for bad flags); anything else is a netdsl bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from .cli_data import add_data_parser
from .diagnostics import NetdslError, UsageError, render

Command = Callable[[argparse.Namespace], int]


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def _input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, dims = _kv(text)
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input wants NAME=C,H,W with integers, got '{text}'") from None
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"--input wants positive dims, got '{text}'")
    return name, shape


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return v


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .net or Caffe .prototxt file")
    p.add_argument("--set", dest="overrides", action="append", type=_kv, default=[],
                   metavar="NAME=VALUE",
                   help="override a variable (width=0.5) or a section field (solver.base_lr=0.1)")
    _plugin_arg(p)


def _plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="import MODULE first: it registers more layer types (repeatable)")


def _load_plugins(args: argparse.Namespace) -> None:
    """The --plugin modules, imported before the command reads any spec: the registry is
    the process's, so every loader the command calls (the runtime's included) sees them."""
    from .diagnostics import Span
    from .plugins import load_plugin

    for module in getattr(args, "plugins", None) or ():
        load_plugin(module, Span(f"--plugin {module}"))


def _net_args(p: argparse.ArgumentParser, phase: str | None = None, batch: bool = True) -> None:
    """--phase, --batch and --input: which of the spec's nets, and its input shapes."""
    p.add_argument("--phase", choices=["train", "test"], default=phase,
                   help="which phase's layers (default: "
                   + (phase or "the file's state, else train") + ")")
    if batch:
        p.add_argument("--batch", type=_positive, default=None,
                       help="batch size (default: the spec's)")
    p.add_argument("--input", dest="inputs", action="append", type=_input_shape, default=[],
                   metavar="NAME=C,H,W", help="shape of a data blob the spec cannot know")


def _shapes_parser(sub: Any) -> None:
    p = sub.add_parser("shapes", help="print every layer's shapes, parameters and MACs",
                       description="Per-layer output shapes (batch included), learnable "
                       "parameters, multiply-accumulates and activation bytes, then totals.")
    _spec_args(p)
    _net_args(p)
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--placement", action="store_true",
                   help="also show which shard of each layer runs where, and the transfers")
    p.set_defaults(func=cmd_shapes)


def default_phase(spec: Any) -> str:
    """Caffe files may say their phase in ``state { phase: TEST }``."""
    for f in spec.items:
        if f.key == "state" and hasattr(f.value, "scalar"):
            ph = f.value.scalar("phase")
            if ph is not None and str(ph).upper() in ("TRAIN", "TEST"):
                return str(ph).lower()
    return "train"


def _net_and_shapes(args: argparse.Namespace) -> tuple[Any, Any]:
    """The spec's net for --phase (default: the file's) and its shapes for --batch/--input."""
    from . import load_spec
    from .build import build
    from .shapes import infer_shapes

    spec = load_spec(args.spec, dict(args.overrides))
    net = build(spec, args.phase or default_phase(spec))
    return net, infer_shapes(net, args.batch, dict(args.inputs))


def cmd_shapes(args: argparse.Namespace) -> int:
    from .report import shapes_json, shapes_table

    net, table = _net_and_shapes(args)
    plan = None
    if args.placement:
        from .placement import plan as make_plan

        plan = make_plan(net, table)
    if args.format == "json":
        print(json.dumps(shapes_json(table, plan), indent=1))
    else:
        shapes_table(table, plan)
    return 0


def _weights_parser(sub: Any) -> None:
    p = sub.add_parser("weights", help="save, load, show and import weights (safetensors)",
                       description="Weights are safetensors files keyed <layer>.<blob> in "
                       "Caffe's layout (conv2.weight is [256, 48, 5, 5]), whatever the placement.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    imp = wsub.add_parser("import", help="convert a Caffe .caffemodel (V1 or V2) to safetensors")
    imp.add_argument("caffemodel")
    imp.add_argument("-o", "--output", required=True)
    imp.set_defaults(func=cmd_weights_import)
    show = wsub.add_parser("show", help="list the blobs of a weights file")
    show.add_argument("file")
    show.add_argument("--format", choices=["table", "json"], default="table")
    show.set_defaults(func=cmd_weights_show)
    save = wsub.add_parser("save", help="initialise a spec's weights from its fillers and save")
    _spec_args(save)
    save.add_argument("-o", "--output", required=True)
    save.add_argument("--seed", type=int, default=None)
    save.set_defaults(func=cmd_weights_save)
    load = wsub.add_parser("load", help="check that a weights file fits a spec")
    _spec_args(load)
    load.add_argument("file")
    load.set_defaults(func=cmd_weights_load)


def cmd_weights_import(args: argparse.Namespace) -> int:
    from .weights import caffemodel_to_tensors, save_weights

    tensors = caffemodel_to_tensors(args.caffemodel)
    path = save_weights(args.output, tensors, {"source": str(args.caffemodel)})
    print(f"wrote {len(tensors)} blobs to {path}")
    return 0


def cmd_weights_show(args: argparse.Namespace) -> int:
    from .weights import load_weights

    tensors = load_weights(args.file)
    rows = [(k, list(v.shape), v.numel()) for k, v in tensors.items()]
    if args.format == "json":
        print(json.dumps({"file": args.file, "blobs": {k: s for k, s, _ in rows},
                          "total": sum(n for *_, n in rows)}, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=args.file, show_footer=True)
    t.add_column("blob", footer="total")
    t.add_column("shape")
    t.add_column("values", justify="right", footer=f"{sum(n for *_, n in rows):,}")
    for k, shape, n in rows:
        t.add_row(k, "×".join(map(str, shape)), f"{n:,}")
    Console().print(t)
    return 0


def cmd_weights_save(args: argparse.Namespace) -> int:
    from . import compile as compile_net
    from . import load
    from .weights import save_weights

    net = compile_net(load(args.spec, "train", dict(args.overrides)), "train", seed=args.seed)
    path = save_weights(args.output, net.state_dict(), {"spec": str(args.spec)})
    print(f"wrote {len(net.state_dict())} blobs to {path}")
    return 0


def cmd_weights_load(args: argparse.Namespace) -> int:
    from . import compile as compile_net
    from . import load
    from .weights import load_net_weights

    net = compile_net(load(args.spec, "train", dict(args.overrides)), "train")
    loaded = load_net_weights(net, args.file, strict=True)
    print(f"{args.file} fits {args.spec}: {len(loaded)} blobs")
    return 0


def _expand_parser(sub: Any) -> None:
    p = sub.add_parser("expand", help="print the fully resolved spec (like cc -E)",
                       description="Imports, variables, groups, repeats and edits applied; "
                       "the result is plain .net text.")
    _spec_args(p)
    p.set_defaults(func=cmd_expand)


def cmd_expand(args: argparse.Namespace) -> int:
    from . import load_spec
    from .printer import print_spec

    sys.stdout.write(print_spec(load_spec(args.spec, dict(args.overrides))))
    return 0


def _convert_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="Caffe prototxt to .net, or .net to Caffe prototxt",
                       description="Converts a Caffe prototxt (V1 or V2) into readable .net, "
                       "or a .net spec into a Caffe V2 prototxt for Caffe or Netscope.")
    p.add_argument("spec")
    p.add_argument("--to", choices=["net", "prototxt"], default=None,
                   help="target format (default: the other one)")
    p.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    p.add_argument("--phase", choices=["train", "test"], default=None,
                   help="prototxt: write only this phase's layers (default: all, with rules)")
    _plugin_arg(p)
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    if args.output:
        from .files import checked_output, write_output

        checked_output(args.output, "the converted spec")
    text = convert(args.spec, args.to, args.phase)
    if args.output:
        write_output(args.output, text, "the converted spec")
    else:
        sys.stdout.write(text)
    return 0


def _draw_parser(sub: Any) -> None:
    p = sub.add_parser("draw", help="draw the placed net with Graphviz",
                       description="Devices as clusters, shapes on edges, cross-device "
                       "transfers dashed with their bytes per image.")
    _spec_args(p)
    p.add_argument("-o", "--output", required=True, help=".svg/.png/.pdf (needs Graphviz's "
                   "dot) or .dot/.gv (the source)")
    _net_args(p)
    p.set_defaults(func=cmd_draw)


def cmd_draw(args: argparse.Namespace) -> int:
    from .draw import draw
    from .placement import plan

    net, table = _net_and_shapes(args)
    out = draw(table, plan(net, table), args.output)
    print(f"wrote {out}")
    return 0


def _export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export the compiled net to ONNX",
                       description="Compiles the spec on the CPU and writes ONNX, checked with "
                       "onnx.checker. By default the graph ends where a deployed net would: "
                       "at the blobs the loss and accuracy layers score.")
    _spec_args(p)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--phase", choices=["train", "test"], default="test")
    p.add_argument("--outputs", default=None, help="comma-separated blobs to return")
    p.add_argument("--batch", type=_positive, default=1, help="batch of the example input")
    p.add_argument("--weights", default=None, help="safetensors weights to export with")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    outputs = [o.strip() for o in args.outputs.split(",")] if args.outputs else None
    path = export_onnx(args.spec, args.output, phase=args.phase, outputs=outputs,
                       batch=args.batch, overrides=dict(args.overrides), weights=args.weights,
                       opset=args.opset)
    print(f"wrote {path} (onnx.checker passed)")
    return 0


def _lower_parser(sub: Any) -> None:
    p = sub.add_parser("lower", help="print the compiled program as Python (torch.fx)",
                       description="The graph netdsl compiles the spec to, printed as torch.fx "
                       "prints a GraphModule: one line per kernel call, and the transfers "
                       "between devices as .to(...), narrow and cat.")
    _spec_args(p)
    _net_args(p, batch=False)
    p.add_argument("--devices", default=None, metavar="LOGICAL=DEVICE,...",
                   help="map logical devices to torch devices (default: as train does)")
    p.add_argument("--unfused", action="store_true",
                   help="keep the logical devices' shards apart even on one physical device")
    p.add_argument("--outputs", default=None, help="comma-separated blobs to compute")
    p.set_defaults(func=cmd_lower)


def cmd_lower(args: argparse.Namespace) -> int:
    from . import load_spec
    from .build import build
    from .compiler import compile as compile_net

    spec = load_spec(args.spec, dict(args.overrides))
    net = build(spec, args.phase or default_phase(spec))
    devices = _device_map(args.devices) if args.devices else None
    compiled = compile_net(net, devices=devices, inputs=dict(args.inputs), seed=0,
                           fuse=not args.unfused)
    outputs = [o.strip() for o in args.outputs.split(",")] if args.outputs else None
    code = compiled.graph_module(outputs).code.strip()
    placed = ", ".join(f"{k}={v}" for k, v in compiled.devices.items())
    print(f"# {net.name or args.spec} ({net.phase.value}) on {placed}")
    print(code)
    return 0


def _device_map(text: str) -> dict[str, str]:
    from .compiler import parse_device_map

    return parse_device_map(text)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", default=None, metavar="LOGICAL=DEVICE,...",
                   help="map logical devices to torch devices, e.g. gpu:0=cuda:0,gpu:1=cpu "
                   "(default: the CUDA devices round-robin, else the CPU)")
    p.add_argument("--data", dest="data_path", default=None, metavar="PATH",
                   help="where the data is (replaces the spec's data path)")
    p.add_argument("--format", choices=["rich", "json"], default="rich",
                   help="rich progress, or one JSON object per line")


def _speed_args(p: argparse.ArgumentParser, workers: bool = True) -> None:
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


def _speed(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("precision", "channels_last", "compile", "cuda_graphs")
    return {k: getattr(args, k) for k in keys}


def _nonfinite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="load weights with NaN or infinite values (refused by default)")


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a spec from its solver and data sections",
                       description="Caffe's `caffe train`: the solver section's update rule, "
                       "lr policy, tests and snapshots. Ctrl-C finishes the iteration, "
                       "snapshots and exits 130; --resume latest continues exactly there.")
    _spec_args(p)
    _run_args(p)
    p.add_argument("--resume", default=None, metavar="latest|PATH",
                   help="continue from the newest snapshot, or a given one")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="fine-tune from a .safetensors or .caffemodel file")
    p.add_argument("--tensorboard", dest="tensorboard_dir", default=None, metavar="DIR",
                   help="also write the scalars as TensorBoard events (needs tensorboard)")
    p.add_argument("--test-data", dest="test_data_path", default=None, metavar="PATH",
                   help="where the TEST data is (default: as --data)")
    _speed_args(p)
    _nonfinite_arg(p)
    p.add_argument("--on-bad-image", choices=["skip", "fail"], default="skip",
                   help="an image that cannot be read: replace it by the next readable one "
                   "and report it at the end (default), or stop with its name")
    p.add_argument("--sync-batchnorm", action="store_true", default=None,
                   help="with several processes, BatchNorm statistics over the global batch")
    g = p.add_argument_group("several processes (as torchrun takes them)")
    g.add_argument("--nproc", type=_positive, default=None, metavar="N",
                   help="data-parallel processes on this machine (one per GPU is usual)")
    g.add_argument("--nnodes", type=_positive, default=1, metavar="M", help="machines")
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

    devices = _device_map(args.devices) if args.devices else None
    result = train(args.spec, overrides=dict(args.overrides), devices=devices,
                   data_path=args.data_path, resume=args.resume, weights=args.weights,
                   fmt=args.format, tensorboard_dir=args.tensorboard_dir,
                   test_data_path=args.test_data_path, workers=args.workers,
                   sync_batchnorm=args.sync_batchnorm, on_bad_image=args.on_bad_image,
                   allow_nonfinite=args.allow_nonfinite, **_speed(args))
    return int(result.get("status", 0))


def _test_parser(sub: Any) -> None:
    p = sub.add_parser("test", help="top-1 and top-5 of trained weights on the test set",
                       description="Caffe's `caffe test`, over the whole test set; --crops 10 "
                       "averages the 4 corner, centre and mirrored crops (AlexNet's test).")
    _spec_args(p)
    _run_args(p)
    p.add_argument("--weights", required=True, metavar="FILE")
    p.add_argument("--crops", type=int, choices=[1, 10], default=None)
    _nonfinite_arg(p)
    _speed_args(p)
    p.set_defaults(func=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from netdsl.runtime.evaluate import test

    devices = _device_map(args.devices) if args.devices else None
    test(args.spec, weights=args.weights, crops=args.crops, overrides=dict(args.overrides),
         devices=devices, data_path=args.data_path, fmt=args.format, workers=args.workers,
         allow_nonfinite=args.allow_nonfinite, **_speed(args))
    return 0


def _time_parser(sub: Any) -> None:
    p = sub.add_parser("time", help="per-layer forward and backward time, as caffe time",
                       description="Times each layer's forward and backward pass on synthetic "
                       "inputs of the net's shapes.")
    _spec_args(p)
    p.add_argument("--iterations", type=_positive, default=50)
    _net_args(p, phase="train")
    p.add_argument("--devices", default=None, metavar="LOGICAL=DEVICE,...")
    p.add_argument("--format", choices=["rich", "json"], default="rich")
    _speed_args(p, workers=False)
    p.set_defaults(func=cmd_time)


def cmd_time(args: argparse.Namespace) -> int:
    from netdsl.runtime.evaluate import time

    devices = _device_map(args.devices) if args.devices else None
    time(args.spec, iterations=args.iterations, batch=args.batch, devices=devices,
         fmt=args.format, overrides=dict(args.overrides), phase=args.phase,
         inputs=dict(args.inputs) or None, **_speed(args))
    return 0


PARSERS: list[Callable[[Any], None]] = [_train_parser, _test_parser, _time_parser,
                                        _shapes_parser, _expand_parser, _convert_parser,
                                        _lower_parser, _draw_parser, _export_parser,
                                        _weights_parser, add_data_parser]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdsl", description="A Caffe-style declarative network compiler for PyTorch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in PARSERS:
        add(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"netdsl {__version__}"


def _log_to_stderr() -> None:
    """netdsl's own log lines (such as where the devices were placed) go to stderr,
    plainly, so that stdout stays clean for --format json."""
    import logging

    class _Stderr(logging.StreamHandler[TextIO]):
        """Writes to whatever sys.stderr is when it emits (tests swap it)."""

        @property  # type: ignore[override, unused-ignore]  # mypy 1.10 rejects a property over an attribute
        def stream(self) -> TextIO:
            return sys.stderr

        @stream.setter
        def stream(self, value: TextIO) -> None:
            pass

    log = logging.getLogger("netdsl")
    if not log.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (training's loop takes both over to
    snapshot first); only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = make_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # argparse already printed the message
        return int(e.code or 0)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what a launcher repeats
    _log_to_stderr()
    try:
        with _sigterm_interrupts():
            _load_plugins(args)
            return int(args.func(args))
    except UsageError as e:
        print(render(e), file=sys.stderr)
        return 2
    except NetdslError as e:
        print(render(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
