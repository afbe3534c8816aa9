"""Silence (Caffe SilenceLayer): consume blobs so they are not reported as outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import register
from .base import Arity, LayerType, NoParams, Shape, ShapeContext

if TYPE_CHECKING:
    import torch


@register
class Silence(LayerType):
    """Takes any number of bottoms and makes no tops (Caffe SilenceLayer)."""

    caffe_names = ("SILENCE",)
    bottoms = Arity(1)
    tops = Arity.exact(0)
    Params = NoParams

    def shape(
        self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return ()

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import Silence as Module

        return Module()
