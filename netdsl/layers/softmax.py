"""Softmax (Caffe SoftmaxLayer): exponentiate and normalise along one axis."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Engine, Kernel, LayerType, Role, Shape, ShapeContext, canonical_axis


@dataclass(frozen=True)
class SoftmaxParams:
    axis: int = field(default=1, metadata=doc("axis normalised over (negative: from the end)"))
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


@register
class Softmax(LayerType[SoftmaxParams]):
    """exp(x) / sum(exp(x)) along `axis`; other axes are independent (Caffe SoftmaxLayer)."""

    caffe_names = ("SOFTMAX",)
    role = Role.PROBABILITIES
    Params = SoftmaxParams

    def shape(
        self, p: SoftmaxParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        canonical_axis(p.axis, len(bottoms[0]), ctx)
        return (bottoms[0],)

    def lower(self, p: SoftmaxParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        import torch

        return Call(torch.softmax, {"dim": p.axis % len(bottoms[0])})
