"""``netdsl convert`` both ways for one small Caffe net: prototxt -> .net -> prototxt
must give the same shapes (both phases) and the same typed layer parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import netdsl
from netdsl.convert import canonical_filler, net_to_prototxt, prototxt_to_net
from netdsl.layers.base import Filler
from netdsl.report import shapes_json
from netdsl.shapes import infer_shapes


def _shapes(path: Path, phase: str, inputs: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    d = shapes_json(infer_shapes(netdsl.load(path, phase), None, inputs))
    for lay in d["layers"]:
        lay.pop("devices")
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
    return [(lay.name, lay.type, _canon(lay.params)) for lay in netdsl.load(path, phase).layers]


def round_trip(tmp_path: Path, prototxt: str,
               inputs: dict[str, tuple[int, ...]] | None = None) -> str:
    """Checks both directions; returns the .net text."""
    inputs = inputs or {}
    proto = tmp_path / "net.prototxt"
    proto.write_text(prototxt)
    text = prototxt_to_net(proto)
    net = tmp_path / "net.net"
    net.write_text(text)
    back = tmp_path / "back.prototxt"
    back.write_text(net_to_prototxt(net))
    for phase in ("train", "test"):
        want = _shapes(proto, phase, inputs)
        assert _shapes(net, phase, inputs) == want, f"prototxt -> .net, {phase}"
        assert _shapes(back, phase, inputs) == want, f".net -> prototxt, {phase}"
        assert _typed(net, phase) == _typed(proto, phase)
        assert _typed(back, phase) == _typed(proto, phase)
    return text
