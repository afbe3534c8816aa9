"""Layers that move, pick or gather blobs with little or no arithmetic: Concat, Slice,
Flatten, Reshape, Crop, Tile, BatchReindex, ShuffleChannel, Filter and Im2col (each
window laid out along the channels); ArgMax and Reduction, which pick or sum along an
axis; DummyData, which makes blobs from fillers, and Parameter, whose top is its own
learnable blob."""

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


# --- Crop, Tile, BatchReindex, ArgMax, ShuffleChannel, Reduction, Filter, Im2col and
# --- Parameter (issue 12) ------------------------------------------------------------------


def crop(x: Tensor, ref: Tensor, axis: int = 2, offsets: Sequence[int] = ()) -> Tensor:
    """Caffe's CropLayer: the axes of ``x`` from ``axis`` on cut to ``ref``'s sizes,
    starting at ``offsets`` (one per cropped axis). ``ref`` gives only its shape: it gets
    no gradient, and ``x``'s gradient is zero outside the crop, as in Caffe."""
    index: list[slice] = [slice(None)] * axis
    for i, off in enumerate(offsets):
        index.append(slice(off, off + ref.shape[axis + i]))
    return x[tuple(index)]


def tile(x: Tensor, axis: int = 1, tiles: int = 1) -> Tensor:
    """Caffe's TileLayer: ``tiles`` copies of the blocks from ``axis`` on, one after the
    other along ``axis`` (the gradient sums the copies)."""
    reps = [1] * x.dim()
    reps[axis] = tiles
    return x.repeat(reps)


def batch_reindex(x: Tensor, index: Tensor) -> Tensor:
    """Caffe's BatchReindexLayer: item ``n`` of the top is item ``int(index[n])`` of ``x``
    (the gradient adds into the items picked, however often; ``index`` gets none)."""
    return x.index_select(0, index.detach().reshape(-1).long())


def _caffe_top_k(x: Tensor, dim: int, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` largest values along ``dim`` and their indices (as ``x``'s dtype), in
    Caffe's order: ``std::partial_sort`` of (value, index) pairs with ``std::greater``,
    so that of equal values the one with the larger index comes first."""
    n = x.shape[dim]
    values, order = torch.sort(x.flip(dim), dim=dim, descending=True, stable=True)
    index = (n - 1) - order.narrow(dim, 0, k)
    return values.narrow(dim, 0, k), index.to(x.dtype)


def argmax(x: Tensor, top_k: int = 1, out_max_val: bool = False, axis: int | None = None
           ) -> Tensor:
    """Caffe's ArgMaxLayer. With ``axis``: the indices (or, with ``out_max_val``, the
    values) of the ``top_k`` largest along it. Without: per item, over everything but
    the batch axis, a (N, 1, top_k) blob of indices, or (N, 2, top_k) of indices then
    values, padded with 1s to the bottom's axes. Caffe has no backward: no gradient."""
    x = x.detach()
    if axis is not None:
        values, index = _caffe_top_k(x, axis, top_k)
        return values if out_max_val else index
    values, index = _caffe_top_k(x.reshape(x.shape[0], -1), 1, top_k)
    out = torch.stack((index, values), 1) if out_max_val else index.unsqueeze(1)
    return out.reshape(*out.shape, *([1] * (x.dim() - 3)))


def shuffle_channel(x: Tensor, group: int = 1) -> Tensor:
    """ShuffleNet's ShuffleChannelLayer: channels seen as a (group, C / group) matrix,
    transposed. The top is 4-D, as the fork's legacy ``Reshape(num, channels, height,
    width)`` makes it (missing axes are 1)."""
    n, c = x.shape[0], x.shape[1]
    h = x.shape[2] if x.dim() > 2 else 1
    w = x.shape[3] if x.dim() > 3 else 1
    return x.reshape(n, group, c // group, h * w).transpose(1, 2).reshape(n, c, h, w)


def reduction(x: Tensor, axis: int = 0, operation: str = "SUM", coeff: float = 1.0) -> Tensor:
    """Caffe's ReductionLayer: the axes from ``axis`` on reduced to one number by SUM,
    ASUM (sum of absolute values), SUMSQ (of squares) or MEAN, times ``coeff``."""
    flat = x.reshape(*x.shape[:axis], -1)
    if operation == "ASUM":
        out = flat.abs().sum(-1)
    elif operation == "SUMSQ":
        out = flat.square().sum(-1)
    elif operation in ("SUM", "MEAN"):
        out = flat.sum(-1)
    else:
        raise ValueError(f"unknown reduction operation {operation!r}")
    if operation == "MEAN":
        coeff = coeff / flat.shape[-1]
    return out if coeff == 1 else out * coeff


def filter_items(*xs: Tensor) -> Tensor | tuple[Tensor, ...]:
    """Caffe's FilterLayer: the items (batch entries) of every bottom but the last whose
    entry in the last bottom, the selector, is non-zero.

    The number of items out depends on the data: this is the one kernel whose output
    size is not known before it runs (under ``torch.compile`` it is a graph break)."""
    selector = xs[-1]
    picked = torch.nonzero(selector.detach().reshape(-1) != 0).reshape(-1)
    out = tuple(x.index_select(0, picked) for x in xs[:-1])
    return out[0] if len(out) == 1 else out


def im2col(x: Tensor, axis: int = 1, kernel: Sequence[int] = (), stride: Sequence[int] = (),
           pad: Sequence[int] = (), dilation: Sequence[int] = ()) -> Tensor:
    """Caffe's Im2colLayer: each window of the axes after ``axis`` laid out along the
    channel axis, channel-major (channel ``c``, kernel offset ``k`` in row-major order
    -> ``c * prod(kernel) + k``); zero padding. Any number of spatial axes."""
    import itertools

    if any(pad):
        widths: list[int] = []
        for p in reversed(pad):
            widths += [p, p]
        x = torch.nn.functional.pad(x, widths)
    out = [(x.shape[axis + 1 + i] - (d * (k - 1) + 1)) // s + 1
           for i, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True))]
    cols = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        index: list[slice] = [slice(None)] * (axis + 1)
        for i, k in enumerate(offsets):
            start = k * dilation[i]
            index.append(slice(start, start + (out[i] - 1) * stride[i] + 1, stride[i]))
        cols.append(x[tuple(index)])
    return torch.stack(cols, axis + 1).flatten(axis, axis + 1)


class LearnedBlob(nn.Module):
    """Caffe's ParameterLayer: its one top is its learnable blob ``value``."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.empty(shape))

    def forward(self) -> Tensor:
        return self.value

    def extra_repr(self) -> str:
        return f"shape={list(self.value.shape)}"
