"""Split (Caffe SplitLayer): hand one blob to several consumers."""

from __future__ import annotations

from . import register
from .base import Alias, Arity, Follow, Kernel, LayerType, NoParams, Shape, ShapeContext


@register
class SplitLayer(LayerType[NoParams]):
    """Copies its bottom to every top (Caffe SplitLayer; Caffe inserts these itself)."""

    name = "Split"  # the class is not called Split: base.Split is the placement enum
    caffe_names = ("SPLIT",)
    follow = Follow.ELEMENTWISE
    tops = Arity(1)
    Params = NoParams

    def shape(
        self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return (bottoms[0],) * len(ctx.tops)

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:

        return Alias()
