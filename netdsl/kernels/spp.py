"""Caffe's SPPLayer (``spp_layer.cpp``): spatial pyramid pooling, one Caffe pooling per
pyramid level, each flattened, joined along the channels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .pooling import pool2d

__all__ = ["SPP"]

#: One pyramid level: the window (and stride) and the padding, each (height, width).
Level = tuple[tuple[int, int], tuple[int, int]]


class SPP(nn.Module):
    """Pools ``x`` once per level with Caffe's pooling (the window is its own stride),
    flattens each result to (N, C * h * w) and concatenates them; a pyramid of one level
    is that pooling alone, unflattened, as in Caffe. STOCHASTIC pools as Caffe's pooling
    does: the weighted average in eval mode, one value sampled per window in train mode."""

    def __init__(self, levels: Sequence[Level], method: str) -> None:
        super().__init__()
        self.levels = [(tuple(k), tuple(p)) for k, p in levels]
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        outs = [pool2d(x, kernel, kernel, pad, self.method, "CEIL", False, self.training)
                for kernel, pad in self.levels]
        if len(outs) == 1:
            return outs[0]
        return torch.cat([o.reshape(o.shape[0], -1) for o in outs], 1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, method={self.method}"
