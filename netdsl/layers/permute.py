"""Permute (fork: SSD's Caffe, weiliu89/caffe, src/caffe/layers/permute_layer.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Alias, Call, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class PermuteParams:
    order: tuple[int, ...] = field(
        default=(),
        metadata=doc("new order of the axes; axes not named follow in their old order"),
    )


def full_order(p: PermuteParams, ndim: int, ctx: ShapeContext) -> tuple[int, ...]:
    """PermuteLayer::LayerSetUp: the given orders, then every axis not given, in order."""
    orders: list[int] = []
    for o in p.order:
        if o < 0:
            raise ctx.error(f"order {o} is negative (Caffe's order is unsigned)", "order")
        if o >= ndim:
            raise ctx.error(
                f"order {o} is not an axis of the {ndim}-D input (0..{ndim - 1})", "order"
            )
        if o in orders:
            raise ctx.error(f"order {o} is given twice", "order", "there are duplicate orders")
        orders.append(o)
    orders += [i for i in range(ndim) if i not in orders]
    return tuple(orders)


@register
class Permute(LayerType[PermuteParams]):
    """Reorders the axes of a blob (fork: SSD's Caffe, weiliu89/caffe).

    SSD permutes its N x C x H x W box predictions to N x H x W x C (``order: [0, 2, 3,
    1]``) before flattening them, so that each location's boxes are contiguous. An order
    that changes nothing shares the input, as Caffe does.
    """

    Params = PermuteParams
    fork = "SSD (weiliu89/caffe)"

    def shape(
        self, p: PermuteParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        order = full_order(p, len(b), ctx)
        return (tuple(b[o] for o in order),)

    def lower(self, p: PermuteParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import detection

        order = full_order(p, len(bottoms[0]), ShapeContext.detached(self.name))
        if order == tuple(range(len(order))):
            return Alias()
        return Call(detection.permute, {"order": order})
