"""Layers that move blobs around without arithmetic: Concat, Slice, Flatten, Reshape,
and DummyData, which makes blobs from fillers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..caffe_math import flatten_shape, reshape_shape
from ..fillers import fill_
from ..layers.base import Filler
from .convolution import Shape

__all__ = ["DummyData", "concat", "flatten", "reshape", "slice_blob"]


def concat(*xs: Tensor, axis: int = 1) -> Tensor:
    """Caffe's Concat along ``axis``."""
    return torch.cat(xs, dim=axis)


def slice_blob(x: Tensor, axis: int = 1, points: Sequence[int] = (), tops: int = 2
               ) -> tuple[Tensor, ...]:
    """Pieces [0, p1), [p1, p2), ..., [pk, end) along ``axis``; ``tops`` equal pieces if
    there are no points (Caffe SliceLayer)."""
    if points:
        return tuple(torch.tensor_split(x, list(points), dim=axis))
    return tuple(torch.split(x, x.shape[axis] // tops, dim=axis))


def flatten(x: Tensor, axis: int = 1, end_axis: int = -1) -> Tensor:
    """Caffe's Flatten with canonical axes, applied to the actual shape (any batch)."""
    return x.reshape(flatten_shape(tuple(x.shape), axis, end_axis))


def reshape(x: Tensor, shape: Sequence[int] = (), axis: int = 0, num_axes: int = -1) -> Tensor:
    """Caffe's reshape rule applied to the actual input shape (so any batch size works)."""
    return x.reshape(reshape_shape(tuple(x.shape), shape, axis, num_axes))


class DummyData(nn.Module):
    """Fresh tops of fixed shapes each call, filled as Caffe's fillers do."""

    _anchor: Tensor

    def __init__(self, shapes: Sequence[Shape], fillers: Sequence[Filler]) -> None:
        super().__init__()
        self.shapes, self.fillers = [tuple(s) for s in shapes], list(fillers)
        self.register_buffer("_anchor", torch.empty(0), persistent=False)  # device and dtype

    def forward(self) -> Tensor | tuple[Tensor, ...]:
        a = self._anchor
        out = []
        for shape, filler in zip(self.shapes, self.fillers, strict=True):
            t = torch.empty(shape, dtype=a.dtype, device=a.device)
            fill_(t, filler, torch.default_generator)
            out.append(t)
        return out[0] if len(out) == 1 else tuple(out)

    def extra_repr(self) -> str:
        return f"shapes={self.shapes}"
