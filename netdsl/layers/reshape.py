"""Reshape (Caffe ReshapeLayer): a new shape for the same data, with 0 = copy, -1 = infer."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..caffe_math import ReshapeError, reshape_shape
from ..fields import doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class ReshapeParams:
    shape: tuple[int, ...] = field(
        default=(), metadata=doc("new dims: 0 copies the bottom's dim, one -1 is inferred")
    )
    axis: int = field(default=0, metadata=doc("first bottom axis replaced (negative: from end)"))
    num_axes: int = field(default=-1, metadata=doc("bottom axes replaced (-1: all from axis)"))


@register
class Reshape(LayerType[ReshapeParams]):
    """Gives the data a new shape without copying (Caffe ReshapeLayer)."""

    Params = ReshapeParams

    def shape(
        self, p: ReshapeParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        try:
            return (reshape_shape(bottoms[0], p.shape, p.axis, p.num_axes),)
        except ReshapeError as e:
            raise ctx.error(str(e), e.field_name) from None

    def lower(self, p: ReshapeParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        return Call(plumbing.reshape, {"shape": tuple(p.shape), "axis": p.axis,
                                       "num_axes": p.num_axes})
