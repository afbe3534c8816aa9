"""Reduction (Caffe ReductionLayer): SUM/ASUM/SUMSQ/MEAN over the trailing axes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis


class ReductionOp(CaffeEnum):
    """ReductionParameter.ReductionOp (BVLC caffe.proto): numbered from 1."""

    SUM = 1
    ASUM = 2
    SUMSQ = 3
    MEAN = 4


@dataclass(frozen=True)
class ReductionParams:
    operation: ReductionOp = field(
        default=ReductionOp.SUM, metadata=doc("SUM, ASUM (of |x|), SUMSQ (of x^2) or MEAN"))
    axis: int = field(
        default=0, metadata=doc("first axis reduced; it and all after it become one number"))
    coeff: float = field(default=1.0, metadata=doc("multiplies the result"))


@register
class Reduction(LayerType[ReductionParams]):
    """Reduces the axes from `axis` on to one number each (Caffe ReductionLayer).

    The top keeps the axes before ``axis`` (axis 0: a scalar, shape ``[]``); MEAN is SUM
    with ``coeff`` divided by the number of entries reduced. From reduction_layer.cpp.
    """

    Params = ReductionParams

    def shape(self, p: ReductionParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        b = bottoms[0]
        return (b[:canonical_axis(p.axis, len(b), ctx)],)

    def lower(self, p: ReductionParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        return Call(plumbing.reduction, {"axis": p.axis % len(bottoms[0]),
                                         "operation": p.operation.name, "coeff": p.coeff})
