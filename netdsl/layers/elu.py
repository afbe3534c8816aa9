"""ELU (Caffe ELULayer): x if x > 0 else alpha * (exp(x) - 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import doc
from . import register
from .base import LayerType, Shape

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ELUParams:
    alpha: float = field(default=1.0, metadata=doc("value approached for very negative x: -alpha"))


@register
class ELU(LayerType):
    """Exponential linear unit (Caffe ELULayer)."""

    Params = ELUParams

    def lower(self, p: ELUParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import ELU as Module

        return Module(p.alpha)
