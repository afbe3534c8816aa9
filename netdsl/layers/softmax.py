"""Softmax (Caffe SoftmaxLayer): exponentiate and normalise along one axis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import doc
from . import register
from .base import LayerType, Shape, ShapeContext, canonical_axis

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SoftmaxParams:
    axis: int = field(default=1, metadata=doc("axis normalised over (negative: from the end)"))
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect"))


@register
class Softmax(LayerType):
    """exp(x) / sum(exp(x)) along `axis`; other axes are independent (Caffe SoftmaxLayer)."""

    caffe_names = ("SOFTMAX",)
    Params = SoftmaxParams

    def shape(
        self, p: SoftmaxParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        canonical_axis(p.axis, len(bottoms[0]), ctx)
        return (bottoms[0],)

    def lower(self, p: SoftmaxParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import Softmax as Module

        return Module(p.axis % len(bottoms[0]))
