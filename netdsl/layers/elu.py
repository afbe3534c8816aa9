"""ELU (Caffe ELULayer): x if x > 0 else alpha * (exp(x) - 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape


@dataclass(frozen=True)
class ELUParams:
    alpha: float = field(default=1.0, metadata=doc("value approached for very negative x: -alpha"))


@register
class ELU(LayerType[ELUParams]):
    """Exponential linear unit (Caffe ELULayer)."""

    Params = ELUParams
    follow = Follow.ELEMENTWISE

    def lower(self, p: ELUParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        import torch.nn.functional as F

        return Call(F.elu, {"alpha": p.alpha})
