"""Eltwise (Caffe EltwiseLayer): element-wise product, weighted sum or maximum."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Shape, ShapeContext


class EltwiseOp(CaffeEnum):
    """EltwiseParameter.EltwiseOp (BVLC caffe.proto)."""

    PROD = 0
    SUM = 1
    MAX = 2


@dataclass(frozen=True)
class EltwiseParams:
    operation: EltwiseOp = field(default=EltwiseOp.SUM, metadata=doc("PROD, SUM or MAX"))
    coeff: tuple[float, ...] = field(
        default=(), metadata=doc("SUM only: one weight per bottom (default all 1)")
    )
    stable_prod_grad: bool = field(
        default=True, metadata=doc("Caffe's slower, stabler PROD gradient; no effect")
    )


@register
class Eltwise(LayerType[EltwiseParams]):
    """Combines same-shaped bottoms element by element (Caffe EltwiseLayer)."""

    caffe_names = ("ELTWISE",)
    fresh_output = True
    bottoms = Arity(2)
    tops = Arity.exact(1)
    Params = EltwiseParams

    def shape(
        self, p: EltwiseParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        if p.coeff and p.operation is EltwiseOp.PROD:
            raise ctx.error("coeff only applies to operation SUM", "coeff")
        if p.coeff and len(p.coeff) != len(bottoms):
            raise ctx.error(
                f"{len(p.coeff)} coeff values for {len(bottoms)} bottoms", "coeff",
                "give one coefficient per bottom",
            )
        first = bottoms[0]
        for i, b in enumerate(bottoms[1:], start=1):
            if b != first:
                raise ctx.error(
                    f"bottom {i} has shape {list(b)} but bottom 0 has {list(first)}", "bottom",
                    "Eltwise needs bottoms of one shape",
                )
        return (first,)

    def lower(self, p: EltwiseParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.eltwise, {"op": p.operation.name, "coeffs": tuple(p.coeff)})
