"""ReLU (Caffe ReLULayer): max(x, 0) + negative_slope * min(x, 0)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import doc
from . import register
from .base import LayerType, Shape

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ReLUParams:
    negative_slope: float = field(
        default=0.0, metadata=doc("slope for negative inputs (0: plain ReLU, else leaky)")
    )
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect"))


@register
class ReLU(LayerType):
    """Rectified linear unit, optionally leaky (Caffe ReLULayer)."""

    caffe_names = ("RELU",)
    Params = ReLUParams

    def lower(self, p: ReLUParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import ReLU as Module

        return Module(p.negative_slope)
