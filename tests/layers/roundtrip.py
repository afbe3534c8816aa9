"""``netdsl convert`` both ways for the layer tests: a Caffe prototxt -> .net -> prototxt,
each of the three loading with the same shapes, parameter counts and typed layers (params,
bottoms, tops, param specs, loss weights) in both phases; and :func:`inputs`, Caffe Input
layers to feed a layer under test."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import netdsl
from netdsl.convert import canonical_filler, net_to_prototxt, prototxt_to_net
from netdsl.layers.base import Filler
from netdsl.report import shapes_json
from netdsl.shapes import infer_shapes

PHASES = ("train", "test")
Inputs = dict[str, tuple[int, ...]]


def inputs(**blobs: tuple[int, ...]) -> str:
    """Caffe Input layers, one per blob (name -> full shape)."""
    return "".join(
        f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
        + " ".join(f"dim: {d}" for d in s) + " } } }\n" for n, s in blobs.items())


def net_shapes(path: Path, phase: str, given: Inputs | None = None) -> dict[str, Any]:
    """What ``netdsl shapes --format json`` compares on: layers, blobs, parameters
    (``given``: per-example shapes of data tops, as ``--input`` gives them)."""
    d = shapes_json(infer_shapes(netdsl.load(path, phase), None, given or {}))
    for lay in d["layers"]:
        lay.pop("devices", None)  # a Caffe net has no devices: --to prototxt drops them
    return {k: d[k] for k in ("batch", "layers", "blobs", "total_params")}


def _canon(v: Any) -> Any:
    """Fillers without the fields their kind ignores, in nested params too."""
    if isinstance(v, Filler):
        return canonical_filler(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.replace(v, **{f.name: _canon(getattr(v, f.name))
                                         for f in dataclasses.fields(v)})
    if isinstance(v, tuple):
        return tuple(_canon(x) for x in v)
    return v


def typed(path: Path, phase: str) -> list[tuple[Any, ...]]:
    """Each layer as build types it: name, type, params, wiring, param specs, loss weights."""
    return [(lay.name, lay.type, _canon(lay.params), lay.bottoms, lay.tops, lay.param_specs,
             lay.loss_weights) for lay in netdsl.load(path, phase).layers]


def convert_both_ways(tmp_path: Path, prototxt: str, given: Inputs | None = None
                      ) -> tuple[str, str]:
    """Converts ``prototxt`` (a Caffe net's text) to .net and back; returns both texts
    after checking that all three load alike in both phases."""
    proto = tmp_path / "net.prototxt"
    proto.write_text(prototxt)
    net_text = prototxt_to_net(proto)
    net = tmp_path / "net.net"
    net.write_text(net_text)
    back_text = net_to_prototxt(net)
    back = tmp_path / "back.prototxt"
    back.write_text(back_text)
    for phase in PHASES:
        want = net_shapes(proto, phase, given)
        assert net_shapes(net, phase, given) == want, f"prototxt -> .net, {phase}"
        assert net_shapes(back, phase, given) == want, f".net -> prototxt, {phase}"
        assert typed(net, phase) == typed(proto, phase), f"prototxt -> .net, {phase}"
        assert typed(back, phase) == typed(proto, phase), f".net -> prototxt, {phase}"
    return net_text, back_text


def round_trip(tmp_path: Path, prototxt: str, given: Inputs | None = None) -> str:
    """:func:`convert_both_ways`; returns the .net text."""
    return convert_both_ways(tmp_path, prototxt, given)[0]
