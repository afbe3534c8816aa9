"""Exp (Caffe ExpLayer): y = base ^ (shift + scale * x)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class ExpParams:
    base: float = field(default=-1.0, metadata=doc("base of the power, > 0; -1 means e"))
    scale: float = field(default=1.0, metadata=doc("multiplies x first"))
    shift: float = field(default=0.0, metadata=doc("added after scaling"))


def check_base(base: float, ctx: ShapeContext) -> float:
    """Caffe's Exp/Log LayerSetUp checks on ``base``; returns log(base) (1 for -1)."""
    if base == -1:
        return 1.0
    if not base > 0:
        raise ctx.error(f"base must be strictly positive (or -1 for e), got {base}", "base")
    log_base = math.log(base)
    if math.isinf(log_base):
        raise ctx.error(f"log(base) = log({base}) is infinite", "base")
    return log_base


@register
class Exp(LayerType[ExpParams]):
    """y = base ^ (shift + scale * x), base e by default (Caffe ExpLayer, exp_layer.cpp)."""

    caffe_names = ("EXP",)
    follow = Follow.ELEMENTWISE
    Params = ExpParams

    def shape(self, p: ExpParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        check_base(p.base, ctx)
        return (bottoms[0],)

    def lower(self, p: ExpParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.caffe_exp, {"base": p.base, "scale": p.scale, "shift": p.shift})
