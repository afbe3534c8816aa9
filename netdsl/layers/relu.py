"""ReLU (Caffe ReLULayer): max(x, 0) + negative_slope * min(x, 0)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Engine, Follow, Kernel, LayerType, Shape


@dataclass(frozen=True)
class ReLUParams:
    negative_slope: float = field(
        default=0.0, metadata=doc("slope for negative inputs (0: plain ReLU, else leaky)")
    )
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


@register
class ReLU(LayerType[ReLUParams]):
    """Rectified linear unit, optionally leaky (Caffe ReLULayer)."""

    caffe_names = ("RELU",)
    follow = Follow.ELEMENTWISE
    Params = ReLUParams

    def lower(self, p: ReLUParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        import torch
        import torch.nn.functional as F

        if p.negative_slope == 0:
            return Call(torch.relu)
        # leaky_relu is x if x >= 0 else slope * x: Caffe's formula for any slope.
        return Call(F.leaky_relu, {"negative_slope": p.negative_slope})

    def lower_in_place(self, p: ReLUParams) -> Kernel:
        import torch
        import torch.nn.functional as F

        if p.negative_slope == 0:
            return Call(torch.relu_)
        return Call(F.leaky_relu_, {"negative_slope": p.negative_slope})
