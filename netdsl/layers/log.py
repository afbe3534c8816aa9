"""Log (Caffe LogLayer): y = log_base(shift + scale * x)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape, ShapeContext
from .exp import check_base


@dataclass(frozen=True)
class LogParams:
    base: float = field(default=-1.0, metadata=doc("base of the logarithm, > 0; -1 means e"))
    scale: float = field(default=1.0, metadata=doc("multiplies x first"))
    shift: float = field(default=0.0, metadata=doc("added after scaling, before the log"))


@register
class Log(LayerType[LogParams]):
    """y = log_base(shift + scale * x), base e by default (Caffe LogLayer, log_layer.cpp)."""

    follow = Follow.ELEMENTWISE
    Params = LogParams

    def shape(self, p: LogParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if check_base(p.base, ctx) == 0:  # Caffe: CHECK(!isinf(1 / log(base)))
            raise ctx.error("base 1 has no logarithm (1 / log(1) is infinite)", "base")
        return (bottoms[0],)

    def lower(self, p: LogParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.caffe_log, {"base": p.base, "scale": p.scale, "shift": p.shift})
