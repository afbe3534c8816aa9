"""``netdsl convert`` both ways for one layer type: a prototxt -> .net -> prototxt, each
step loading with the same shapes, parameter counts and typed layer params."""

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


def _shapes(path: Path, phase: str, inputs: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    d = shapes_json(infer_shapes(netdsl.load(path, phase), None, inputs))
    for lay in d["layers"]:
        lay.pop("devices", None)
    return {k: d[k] for k in ("batch", "layers", "blobs", "total_params")}


def _canon(v: Any) -> Any:
    if isinstance(v, Filler):
        return canonical_filler(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.replace(v, **{f.name: _canon(getattr(v, f.name))
                                         for f in dataclasses.fields(v)})
    if isinstance(v, tuple):
        return tuple(_canon(x) for x in v)
    return v


def _typed(path: Path, phase: str) -> list[tuple[Any, ...]]:
    return [(lay.name, lay.type, _canon(lay.params), lay.bottoms, lay.tops)
            for lay in netdsl.load(path, phase).layers]


def round_trip(tmp_path: Path, prototxt: str,
               inputs: dict[str, tuple[int, ...]] | None = None) -> tuple[str, str]:
    """Converts ``prototxt`` (a Caffe net's text) to .net and back; returns both texts
    after checking that all three load alike in both phases."""
    inputs = inputs or {}
    proto = tmp_path / "net.prototxt"
    proto.write_text(prototxt)
    net_text = prototxt_to_net(proto)
    net = tmp_path / "net.net"
    net.write_text(net_text)
    back_text = net_to_prototxt(net)
    back = tmp_path / "back.prototxt"
    back.write_text(back_text)
    for phase in PHASES:
        want = _shapes(proto, phase, inputs)
        assert _shapes(net, phase, inputs) == want, f"prototxt -> .net, {phase}"
        assert _shapes(back, phase, inputs) == want, f".net -> prototxt, {phase}"
        assert _typed(net, phase) == _typed(proto, phase)
        assert _typed(back, phase) == _typed(proto, phase)
    return net_text, back_text
