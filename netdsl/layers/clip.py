"""Clip (Caffe ClipLayer): y = max(min, min(x, max))."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class ClipParams:
    min: float | None = field(default=None, metadata=doc("lower bound (required)"))
    max: float | None = field(default=None, metadata=doc("upper bound (required)"))


@register
class Clip(LayerType[ClipParams]):
    """y = max(min, min(x, max)) (Caffe ClipLayer, src/caffe/layers/clip_layer.cpp)."""

    follow = Follow.ELEMENTWISE
    Params = ClipParams

    def shape(self, p: ClipParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        # caffe.proto: `required float min = 1; required float max = 2;`
        for name in ("min", "max"):
            if getattr(p, name) is None:
                raise ctx.error(f"needs '{name}' (Caffe's clip_param requires min and max)",
                                hint="e.g. min: 0  max: 6")
        return (bottoms[0],)

    def lower(self, p: ClipParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.clip, {"min": p.min, "max": p.max})
