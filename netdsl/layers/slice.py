"""Slice (Caffe SliceLayer): cut a blob into pieces along one axis."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Shape, ShapeContext
from .concat import legacy_axis


@dataclass(frozen=True)
class SliceParams:
    axis: int = field(default=1, metadata=doc("axis to cut along (negative: from the end)"))
    slice_point: tuple[int, ...] = field(
        default=(), metadata=doc("indices where a new top starts (none: equal parts)")
    )
    slice_dim: int | None = field(
        default=None, metadata=doc("deprecated alias for axis; no negative values")
    )


def slice_sizes(p: SliceParams, size: int, n_tops: int, ctx: ShapeContext) -> list[int]:
    """Sizes of the tops along the slice axis (Caffe SliceLayer::Reshape)."""
    if p.slice_point:
        if len(p.slice_point) != n_tops - 1:
            raise ctx.error(
                f"{len(p.slice_point)} slice points make {len(p.slice_point) + 1} pieces, "
                f"but the layer has {n_tops} tops", "slice_point",
                "give one slice_point fewer than tops, or none for equal parts",
            )
        sizes, prev = [], 0
        for pt in p.slice_point:
            if pt <= prev:
                raise ctx.error(
                    f"slice points must increase and be positive; got {list(p.slice_point)}",
                    "slice_point",
                )
            sizes.append(pt - prev)
            prev = pt
        if prev >= size:
            # Caffe would make an empty (or negative) last top here.
            raise ctx.error(
                f"slice point {prev} leaves nothing for the last top: the axis has {size}",
                "slice_point",
            )
        sizes.append(size - prev)
        return sizes
    if size % n_tops:
        raise ctx.error(
            f"{n_tops} tops do not evenly divide the slice axis of size {size}", "top",
            "give slice_point to cut unequal pieces",
        )
    return [size // n_tops] * n_tops


@register
class Slice(LayerType[SliceParams]):
    """Cuts its bottom along `axis` at `slice_point`s, one piece per top (Caffe SliceLayer)."""

    caffe_names = ("SLICE",)
    tops = Arity(1)
    Params = SliceParams

    def shape(
        self, p: SliceParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        axis = legacy_axis(p.axis, p.slice_dim, "slice_dim", len(b), ctx)
        sizes = slice_sizes(p, b[axis], len(ctx.tops), ctx)
        return tuple((*b[:axis], s, *b[axis + 1:]) for s in sizes)

    def lower(self, p: SliceParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        axis = p.slice_dim if p.slice_dim is not None else p.axis % len(bottoms[0])
        return Call(plumbing.slice_blob, {"axis": axis, "points": tuple(p.slice_point),
                                          "tops": len(tops)})
