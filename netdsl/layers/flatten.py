"""Flatten (Caffe FlattenLayer): merge a range of axes into one."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..caffe_math import flatten_shape
from ..fields import doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis


@dataclass(frozen=True)
class FlattenParams:
    axis: int = field(default=1, metadata=doc("first axis merged; earlier axes are kept"))
    end_axis: int = field(default=-1, metadata=doc("last axis merged (negative: from the end)"))


@register
class Flatten(LayerType[FlattenParams]):
    """Merges axes axis..end_axis into one (Caffe FlattenLayer)."""

    caffe_names = ("FLATTEN",)
    Params = FlattenParams

    def shape(
        self, p: FlattenParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        start = canonical_axis(p.axis, len(b), ctx, "axis")
        end = canonical_axis(p.end_axis, len(b), ctx, "end_axis")
        if end + 1 < start:
            raise ctx.error(
                f"end_axis {p.end_axis} (axis {end}) comes before axis {p.axis} (axis {start})",
                "end_axis",
            )
        return (flatten_shape(b, start, end),)

    def lower(self, p: FlattenParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        n = len(bottoms[0])
        return Call(plumbing.flatten, {"axis": p.axis % n, "end_axis": p.end_axis % n})
