"""Stage 12: the command line. ``main(argv) -> exit code``.

Every user error is a NetdslError rendered as ``file:line:col: error: ...`` on stderr,
exit status 1 (2 for bad flags); anything else is a netdsl bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from .cli_args import (
    device_map,
    net_args,
    plugin_arg,
    positive,
    spec_args,
)
from .cli_data import add_data_parser
from .cli_run import add_run_parsers
from .diagnostics import NetdslError, UsageError, render

Command = Callable[[argparse.Namespace], int]


def _load_plugins(args: argparse.Namespace) -> None:
    """The --plugin modules, imported before the command reads any spec: the registry is
    the process's, so every loader the command calls (the runtime's included) sees them."""
    from .diagnostics import Span
    from .plugins import load_plugin

    for module in getattr(args, "plugins", None) or ():
        load_plugin(module, Span(f"--plugin {module}"))


def _shapes_parser(sub: Any) -> None:
    p = sub.add_parser("shapes", help="print every layer's shapes, parameters and MACs",
                       description="Per-layer output shapes (batch included), learnable "
                       "parameters, multiply-accumulates and activation bytes, then totals.")
    spec_args(p)
    net_args(p)
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
    spec_args(save)
    save.add_argument("-o", "--output", required=True)
    save.add_argument("--seed", type=int, default=None)
    save.set_defaults(func=cmd_weights_save)
    load = wsub.add_parser("load", help="check that a weights file fits a spec")
    spec_args(load)
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
    spec_args(p)
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
    plugin_arg(p)
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
    spec_args(p)
    p.add_argument("-o", "--output", required=True, help=".svg/.png/.pdf (needs Graphviz's "
                   "dot) or .dot/.gv (the source)")
    net_args(p)
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
    spec_args(p)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--phase", choices=["train", "test"], default="test")
    p.add_argument("--outputs", default=None, help="comma-separated blobs to return")
    p.add_argument("--batch", type=positive, default=1, help="batch of the example input")
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
    spec_args(p)
    net_args(p, batch=False)
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
    devices = device_map(args.devices) if args.devices else None
    compiled = compile_net(net, devices=devices, inputs=dict(args.inputs), seed=0,
                           fuse=not args.unfused)
    outputs = [o.strip() for o in args.outputs.split(",")] if args.outputs else None
    code = compiled.graph_module(outputs).code.strip()
    placed = ", ".join(f"{k}={v}" for k, v in compiled.devices.items())
    print(f"# {net.name or args.spec} ({net.phase.value}) on {placed}")
    print(code)
    return 0


PARSERS: list[Callable[[Any], None]] = [add_run_parsers, _shapes_parser, _expand_parser,
                                        _convert_parser, _lower_parser, _draw_parser,
                                        _export_parser, _weights_parser, add_data_parser]


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
