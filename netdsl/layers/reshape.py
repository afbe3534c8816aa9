"""Reshape (Caffe ReshapeLayer): a new shape for the same data, with 0 = copy, -1 = infer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import doc
from . import register
from .base import LayerType, Shape, ShapeContext, count

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ReshapeParams:
    shape: tuple[int, ...] = field(
        default=(), metadata=doc("new dims: 0 copies the bottom's dim, one -1 is inferred")
    )
    axis: int = field(default=0, metadata=doc("first bottom axis replaced (negative: from end)"))
    num_axes: int = field(default=-1, metadata=doc("bottom axes replaced (-1: all from axis)"))


class ReshapeError(ValueError):
    """A violated ReshapeLayer CHECK: the message and the field it concerns."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.field_name = field_name


def reshape_shape(bottom: Shape, dims: tuple[int, ...], axis: int, num_axes: int) -> Shape:
    """Caffe's ReshapeLayer::LayerSetUp + Reshape arithmetic, step for step.

    Bottom axes [start, end) are replaced by ``dims``; a 0 copies the bottom dim at the
    *same position* (start + i, which may lie outside the replaced range), a -1 takes
    whatever count is left. Used by shape inference and, at run time, by the module.
    """
    n = len(bottom)
    copy_axes = [i for i, d in enumerate(dims) if d == 0]
    inferred = [i for i, d in enumerate(dims) if d == -1]
    if len(inferred) > 1:
        raise ReshapeError("shape has more than one -1; at most one dim can be inferred",
                           "shape")
    if any(d < -1 for d in dims):
        raise ReshapeError(f"shape {list(dims)} has a dim below -1", "shape")
    start = axis if axis >= 0 else n + axis + 1
    if not 0 <= start <= n:
        raise ReshapeError(f"axis {axis} is out of range for a {n}-D bottom", "axis")
    if num_axes < -1:
        raise ReshapeError(f"num_axes must be >= 0, or -1 for all; got {num_axes}", "num_axes")
    end = n if num_axes == -1 else start + num_axes
    if end > n:
        raise ReshapeError(
            f"axis + num_axes = {end} is past the {n} axes of the bottom", "num_axes"
        )
    top = [*bottom[:start], *dims, *bottom[end:]]
    for i in copy_axes:
        if start + i >= n:
            raise ReshapeError(
                f"shape has a 0 at position {i}, but the bottom has no axis {start + i} to copy",
                "shape",
            )
        top[start + i] = bottom[start + i]
    total = count(bottom)
    if inferred:
        known = count(d for i, d in enumerate(top) if i != start + inferred[0])
        if known == 0 or total % known:
            raise ReshapeError(
                f"the bottom's {total} values are not divisible by the product of the "
                f"other dims ({known})", "shape",
            )
        top[start + inferred[0]] = total // known
    if count(top) != total:
        raise ReshapeError(
            f"the new shape {top} holds {count(top)} values, the bottom {list(bottom)} "
            f"holds {total}", "shape",
        )
    return tuple(top)


@register
class Reshape(LayerType):
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
              ) -> torch.nn.Module:
        from ._modules import Reshape as Module

        return Module(p.shape, p.axis, p.num_axes)
