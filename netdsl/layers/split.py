"""Split (Caffe SplitLayer): hand one blob to several consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import register
from .base import Arity, LayerType, NoParams, Shape, ShapeContext

if TYPE_CHECKING:
    import torch


@register
class SplitLayer(LayerType):
    """Copies its bottom to every top (Caffe SplitLayer; Caffe inserts these itself)."""

    name = "Split"  # the class is not called Split: base.Split is the placement enum
    caffe_names = ("SPLIT",)
    tops = Arity(1)
    Params = NoParams

    def shape(
        self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return (bottoms[0],) * len(ctx.tops)

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import Split as Module

        return Module(len(tops))
