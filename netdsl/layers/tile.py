"""Tile (Caffe TileLayer): copies of the blob's trailing blocks along an axis."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis


@dataclass(frozen=True)
class TileParams:
    axis: int = field(default=1, metadata=doc("the axis whose size is multiplied"))
    tiles: int | None = field(default=None, metadata=doc("number of copies (required)"))


@register
class Tile(LayerType[TileParams]):
    """`tiles` copies of the blob along `axis` (Caffe TileLayer, tile_layer.cpp)."""

    Params = TileParams

    def shape(self, p: TileParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        b = bottoms[0]
        axis = canonical_axis(p.axis, len(b), ctx)
        if p.tiles is None:
            raise ctx.error("needs 'tiles', the number of copies", hint="e.g. tiles: 2")
        if p.tiles < 1:
            raise ctx.error(f"tiles must be positive, got {p.tiles}", "tiles")
        return ((*b[:axis], b[axis] * p.tiles, *b[axis + 1:]),)

    def lower(self, p: TileParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        return Call(plumbing.tile, {"axis": p.axis % len(bottoms[0]), "tiles": p.tiles})
