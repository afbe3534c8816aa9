"""``netdsl weights``: import, export, show, save and load weight files.

netdsl's weights are safetensors files keyed ``<layer>.<blob>`` in Caffe's layout;
``import`` reads Caffe's binary ``.caffemodel`` into one, ``export`` writes one back out
as a ``.caffemodel`` that Caffe's ``--weights`` (``Net::CopyTrainedLayersFrom``) reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .cli_args import plugin_arg, spec_args

__all__ = ["add_weights_parser"]


def add_weights_parser(sub: Any) -> None:
    p = sub.add_parser("weights", help="import, export, show, save and load weights",
                       description="Weights are safetensors files keyed <layer>.<blob> in "
                       "Caffe's layout (conv2.weight is [256, 48, 5, 5]), whatever the placement.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    imp = wsub.add_parser("import", help="convert a Caffe .caffemodel (V1 or V2) to safetensors")
    imp.add_argument("caffemodel")
    imp.add_argument("-o", "--output", required=True)
    imp.set_defaults(func=cmd_weights_import)
    exp = wsub.add_parser("export", help="write safetensors weights as a Caffe .caffemodel",
                          description="Writes Caffe's binary NetParameter (V2 layers, float "
                          "blobs with shapes), which `caffe train/test --weights` reads. "
                          "With --net, each layer gets its type and its blobs Caffe's order.")
    exp.add_argument("file", help="a .safetensors weights file")
    exp.add_argument("-o", "--output", required=True, help="the .caffemodel to write")
    exp.add_argument("--net", default=None, metavar="SPEC",
                     help="the .net or .prototxt the weights belong to (recommended)")
    plugin_arg(exp)
    exp.set_defaults(func=cmd_weights_export)
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


def _net_layers(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """The net's name, and (name, type) of every layer of either phase in its order."""
    from . import load_spec
    from .build import build

    loaded = load_spec(spec)
    layers: dict[str, str] = {}
    name = ""
    for phase in ("train", "test"):
        net = build(loaded, phase)
        name = name or net.name or ""
        for lay in net.layers:
            layers.setdefault(lay.name, lay.type)
    return name, list(layers.items())


def cmd_weights_export(args: argparse.Namespace) -> int:
    from .caffemodel import encode_caffemodel, to_caffe_layers
    from .files import checked_output, write_output
    from .weights import load_weights, stored_order

    checked_output(args.output, "the Caffe model")
    name, layers = _net_layers(args.net) if args.net else ("", None)
    tensors = load_weights(args.file)
    arrays = {k: tensors[k].float().numpy() if tensors[k].is_floating_point()
              else tensors[k].numpy() for k in stored_order(args.file)}
    caffe_layers = to_caffe_layers(arrays, layers, args.file)
    path = write_output(args.output, encode_caffemodel(name, caffe_layers), "the Caffe model")
    count = sum(len(lay.blobs) for lay in caffe_layers)
    print(f"wrote {count} blobs of {len(caffe_layers)} layers to {path}")
    if layers is None:
        print("note: without --net the layers have no type and keep the file's blob order,\n"
              "and `netdsl weights import` names their blobs blob0, blob1...", file=sys.stderr)
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
