"""Swish (Caffe SwishLayer): y = x * sigmoid(beta * x)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape


@dataclass(frozen=True)
class SwishParams:
    beta: float = field(default=1.0, metadata=doc("scales x inside the sigmoid"))


@register
class Swish(LayerType[SwishParams]):
    """y = x * sigmoid(beta * x) (Caffe SwishLayer, swish_layer.cpp; Ramachandran et al.)."""

    follow = Follow.ELEMENTWISE
    Params = SwishParams

    def lower(self, p: SwishParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.swish, {"beta": p.beta})
