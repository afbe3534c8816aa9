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
from .cli_weights import add_weights_parser
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
    """The spec's net for --phase (default: the file's) and its shapes for --batch/--input.

    A Caffe solver file stands for its net (``net:``, or ``train_net:``/``test_net:`` for
    the phase), with the solver's ``train_state``/``test_state`` merged into the net's
    state as Caffe's Solver does. ``args.batch_from`` says where the batch came from.
    """
    from . import load_spec
    from .build import build, net_state
    from .plugins import read_spec_file
    from .shapes import infer_shapes
    from .training import _net_file, _solver_file_block, solver_state

    solver = _solver_file_block(read_spec_file(args.spec))
    level: int | None = None
    stages: list[str] | None = None
    if solver is None:
        spec = load_spec(args.spec, dict(args.overrides))
        phase = args.phase or default_phase(spec)
    else:
        import logging
        from pathlib import Path

        phase = args.phase or "train"
        keys = ("net", "train_net") if phase == "train" else ("net", "test_net")
        key = next((k for k in keys if solver.scalar(k)), "train_net")
        path = _net_file(solver, key, Path(args.spec).parent)
        logging.getLogger("netdsl").info("netdsl: %s names its net with %s: %s",
                                         args.spec, key, path)
        spec = load_spec(path, {k: v for k, v in args.overrides
                                if not k.startswith("solver.")})
        level, stages = solver_state(solver, phase, net_state(spec))
    net = build(spec, phase, level, stages)
    batch, args.batch_from = _batch_and_source(net, args.batch)
    return net, infer_shapes(net, batch, dict(args.inputs))


def _batch_and_source(net: Any, batch: int | None) -> tuple[int, str]:
    """``--batch``, else the spec's (a data layer's or input's first dim, else the data
    section's batch_size), else 1; and where it came from, for the table's title."""
    if batch:
        return batch, "--batch"
    if net.batch:
        lay = next((x for x in net.layers if x.kind.is_data and x.kind.batch_size(x.params)),
                   None)
        return net.batch, (f"{lay.type} '{lay.name}'" if lay is not None else "the spec")
    if net.data is not None and net.data.config.batch_size:
        return int(net.data.config.batch_size), "data section"
    return 1, "default: the spec gives none"


def cmd_shapes(args: argparse.Namespace) -> int:
    from .report import shapes_json, shapes_table

    net, table = _net_and_shapes(args)
    plan = None
    if args.placement:
        from .placement import plan as make_plan

        plan = make_plan(net, table)
    if args.format == "json":
        print(json.dumps(shapes_json(table, plan, args.batch_from), indent=1))
    else:
        shapes_table(table, plan, args.batch_from)
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

    sys.stdout.write(print_spec(load_spec(args.spec, dict(args.overrides)), tidy=True))
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
    to_prototxt = (args.to or ("net" if args.spec.endswith(".prototxt") else "prototxt")
                   ) == "prototxt"
    if args.output:
        write_output(args.output, text, "the converted spec")
        if to_prototxt:
            from .convert_solver import write_solver_beside

            for line in write_solver_beside(args.spec, args.output, args.phase):
                print(line, file=sys.stderr)
    else:
        sys.stdout.write(text)
        from .convert_solver import solver_prototxt

        if to_prototxt and solver_prototxt(args.spec, "")[0] is not None:
            print("note: without -o the solver section is not written\n"
                  "(with -o it goes to solver.prototxt beside the net)", file=sys.stderr)
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
                                        _export_parser, add_weights_parser, add_data_parser]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netdsl", description="A Caffe-style declarative network compiler for PyTorch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in PARSERS:
        add(sub)
    from .cli_predict import add_predict_parsers

    add_predict_parsers(sub)
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
