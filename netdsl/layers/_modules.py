"""The torch modules that layer types lower to (imported only by ``LayerType.lower``).

Every module's ``forward(*bottoms)`` returns a tuple with one tensor per top. Learnable
blobs are ``nn.Parameter``s with Caffe's names and shapes, created with ``torch.empty``
(the compiler fills them); Caffe's non-learned blobs (BatchNorm's) are buffers.
Arithmetic that plain torch gets subtly different from Caffe lives in :mod:`netdsl.ops`.

This module imports torch at the top, so nothing on the parse/shapes path may import
it: layer files import it inside ``lower()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..fillers import fill_
from .base import Filler, Shape
from .flatten import flatten_shape
from .reshape import reshape_shape

Tops = tuple[Tensor, ...]


def _empty_param(shape: Shape) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape))


def _broadcastable(t: Tensor, axis: int, ndim: int) -> Tensor:
    """View an operand covering axes axis..axis+k-1 of an ndim-D blob for broadcasting."""
    if t.dim() == 0:
        return t
    return t.reshape(*t.shape, *([1] * (ndim - axis - t.dim())))


# --------------------------------------------------------------------------------------
# Element-wise
# --------------------------------------------------------------------------------------


class ReLU(nn.Module):
    def __init__(self, negative_slope: float = 0.0) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tops:
        if self.negative_slope == 0:
            return (F.relu(x),)
        # leaky_relu is x if x >= 0 else slope * x, which is Caffe's formula for any slope.
        return (F.leaky_relu(x, self.negative_slope),)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tops:
        return (torch.sigmoid(x),)


class TanH(nn.Module):
    def forward(self, x: Tensor) -> Tops:
        return (torch.tanh(x),)


class AbsVal(nn.Module):
    def forward(self, x: Tensor) -> Tops:
        return (torch.abs(x),)


class BNLL(nn.Module):
    """log(1 + exp(x)), in Caffe's overflow-safe form x>0: x + log(1 + exp(-x))."""

    def forward(self, x: Tensor) -> Tops:
        return (x.clamp(min=0) + torch.log1p(torch.exp(-x.abs())),)


class Power(nn.Module):
    def __init__(self, power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        self.power, self.scale, self.shift = power, scale, shift

    def forward(self, x: Tensor) -> Tops:
        if self.power * self.scale == 0:
            # Caffe's special case: a constant (1 for power 0), with a zero gradient.
            value = 1.0 if self.power == 0 else self.shift**self.power
            return (torch.full_like(x, value),)
        y = x if self.scale == 1 else x * self.scale
        if self.shift != 0:
            y = y + self.shift
        if self.power != 1:
            y = y.pow(self.power)
        return (y,)

    def extra_repr(self) -> str:
        return f"power={self.power}, scale={self.scale}, shift={self.shift}"


class ELU(nn.Module):
    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tops:
        return (F.elu(x, self.alpha),)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class PReLU(nn.Module):
    """max(x, 0) + a * min(x, 0); ``weight`` is () (shared) or (C,) for axis 1."""

    def __init__(self, weight_shape: Shape) -> None:
        super().__init__()
        self.weight = _empty_param(weight_shape)

    def forward(self, x: Tensor) -> Tops:
        a = _broadcastable(self.weight, 1, x.dim())
        return (x.clamp(min=0) + a * x.clamp(max=0),)


class Dropout(nn.Module):
    """Caffe's dropout: keep with probability 1 - p; with ``scale_train`` the kept values
    are scaled by 1/(1-p) while training (inverted dropout), otherwise the test-phase
    output is scaled by 1 - p instead."""

    def __init__(self, ratio: float = 0.5, scale_train: bool = True) -> None:
        super().__init__()
        self.ratio, self.scale_train = ratio, scale_train

    def forward(self, x: Tensor) -> Tops:
        if self.scale_train:
            return (F.dropout(x, self.ratio, self.training),)
        if self.training:
            return (F.dropout(x, self.ratio, True) * (1.0 - self.ratio),)
        return (x * (1.0 - self.ratio),)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, scale_train={self.scale_train}"


# --------------------------------------------------------------------------------------
# Softmax, losses, metrics
# --------------------------------------------------------------------------------------


class Softmax(nn.Module):
    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tops:
        return (torch.softmax(x, dim=self.axis),)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class SoftmaxWithLoss(nn.Module):
    """The unweighted loss (0-d) and, with a second top, the softmax probabilities."""

    def __init__(self, axis: int, ignore_label: int | None, normalization: str,
                 n_tops: int = 1) -> None:
        super().__init__()
        self.axis, self.ignore_label = axis, ignore_label
        self.normalization, self.n_tops = normalization, n_tops

    def forward(self, logits: Tensor, labels: Tensor) -> Tops:
        loss = ops.softmax_with_loss(logits, labels, self.axis, self.ignore_label,
                                     self.normalization)
        if self.n_tops == 1:
            return (loss,)
        return (loss, torch.softmax(logits, dim=self.axis))

    def extra_repr(self) -> str:
        return (f"axis={self.axis}, ignore_label={self.ignore_label}, "
                f"normalization={self.normalization}")


class EuclideanLoss(nn.Module):
    """sum((a - b)^2) / N / 2, b taken in a's shape (Caffe only needs equal counts)."""

    def forward(self, a: Tensor, b: Tensor) -> Tops:
        diff = a - b.reshape(a.shape)
        return (diff.square().sum() / a.shape[0] / 2,)


class Accuracy(nn.Module):
    def __init__(self, top_k: int = 1, axis: int = 1, ignore_label: int | None = None,
                 n_tops: int = 1) -> None:
        super().__init__()
        self.top_k, self.axis, self.ignore_label, self.n_tops = top_k, axis, ignore_label, n_tops

    def forward(self, scores: Tensor, labels: Tensor) -> Tops:
        args = (self.top_k, self.axis, self.ignore_label)
        acc = ops.accuracy(scores, labels, *args)
        if self.n_tops == 1:
            return (acc,)
        return (acc, ops.per_class_accuracy(scores, labels, *args))

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, axis={self.axis}, ignore_label={self.ignore_label}"


# --------------------------------------------------------------------------------------
# Blob plumbing
# --------------------------------------------------------------------------------------


class Concat(nn.Module):
    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: Tensor) -> Tops:
        if len(xs) == 1:
            return (xs[0],)
        return (torch.cat(xs, dim=self.axis),)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class Slice(nn.Module):
    """Pieces [0, p1), [p1, p2), ..., [pk, end) along ``axis``; equal pieces if no points."""

    def __init__(self, axis: int, slice_points: Sequence[int], n_tops: int) -> None:
        super().__init__()
        self.axis, self.slice_points, self.n_tops = axis, tuple(slice_points), n_tops

    def forward(self, x: Tensor) -> Tops:
        if self.slice_points:
            return tuple(torch.tensor_split(x, list(self.slice_points), dim=self.axis))
        return tuple(torch.split(x, x.shape[self.axis] // self.n_tops, dim=self.axis))

    def extra_repr(self) -> str:
        return f"axis={self.axis}, slice_points={list(self.slice_points)}, tops={self.n_tops}"


class Split(nn.Module):
    def __init__(self, n_tops: int) -> None:
        super().__init__()
        self.n_tops = n_tops

    def forward(self, x: Tensor) -> Tops:
        return (x,) * self.n_tops


class Silence(nn.Module):
    def forward(self, *xs: Tensor) -> Tops:
        return ()


class Eltwise(nn.Module):
    def __init__(self, operation: str = "SUM", coeffs: Sequence[float] = ()) -> None:
        super().__init__()
        self.operation, self.coeffs = operation, tuple(coeffs)

    def forward(self, *xs: Tensor) -> Tops:
        return (ops.eltwise(xs, self.operation, self.coeffs or None),)

    def extra_repr(self) -> str:
        return f"operation={self.operation}, coeffs={list(self.coeffs)}"


class Flatten(nn.Module):
    def __init__(self, start: int, end: int) -> None:
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: Tensor) -> Tops:
        return (x.reshape(flatten_shape(tuple(x.shape), self.start, self.end)),)

    def extra_repr(self) -> str:
        return f"axis={self.start}, end_axis={self.end}"


class Reshape(nn.Module):
    """Caffe's reshape rule applied to the actual input shape (so any batch size works)."""

    def __init__(self, dims: Sequence[int], axis: int = 0, num_axes: int = -1) -> None:
        super().__init__()
        self.dims, self.axis, self.num_axes = tuple(dims), axis, num_axes

    def forward(self, x: Tensor) -> Tops:
        return (x.reshape(reshape_shape(tuple(x.shape), self.dims, self.axis, self.num_axes)),)

    def extra_repr(self) -> str:
        return f"shape={list(self.dims)}, axis={self.axis}, num_axes={self.num_axes}"


# --------------------------------------------------------------------------------------
# Learned, matmul-like
# --------------------------------------------------------------------------------------

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class Conv(nn.Module):
    """Convolution (or, ``transposed``, Deconvolution) applied to each bottom with one
    set of weights. The weight layout is Caffe's, which is torch's for both."""

    def __init__(self, shapes: Mapping[str, Shape], stride: Sequence[int], pad: Sequence[int],
                 dilation: Sequence[int], groups: int, transposed: bool = False) -> None:
        super().__init__()
        self.weight = _empty_param(shapes["weight"])
        self.bias = _empty_param(shapes["bias"]) if "bias" in shapes else None
        n = len(shapes["weight"]) - 2
        table = _CONV_T if transposed else _CONV
        if n not in table:
            raise NotImplementedError(f"{n}-D convolution has no torch lowering (1 to 3 only)")
        self._fn = table[n]
        self.stride, self.pad, self.dilation = tuple(stride), tuple(pad), tuple(dilation)
        self.groups, self.transposed = groups, transposed

    def _one(self, x: Tensor) -> Tensor:
        if self.transposed:
            return self._fn(x, self.weight, self.bias, self.stride, self.pad, 0, self.groups,
                            self.dilation)
        return self._fn(x, self.weight, self.bias, self.stride, self.pad, self.dilation,
                        self.groups)

    def forward(self, *xs: Tensor) -> Tops:
        return tuple(self._one(x) for x in xs)

    def extra_repr(self) -> str:
        return (f"weight={list(self.weight.shape)}, stride={self.stride}, pad={self.pad}, "
                f"dilation={self.dilation}, groups={self.groups}, "
                f"transposed={self.transposed}, bias={self.bias is not None}")


class InnerProduct(nn.Module):
    """Axes from ``axis`` on are flattened into the inputs; weight (out, in), or (in, out)
    with ``transpose``."""

    def __init__(self, shapes: Mapping[str, Shape], axis: int, transpose: bool) -> None:
        super().__init__()
        self.weight = _empty_param(shapes["weight"])
        self.bias = _empty_param(shapes["bias"]) if "bias" in shapes else None
        self.axis, self.transpose = axis, transpose

    def forward(self, x: Tensor) -> Tops:
        x = x.reshape(*x.shape[: self.axis], -1)
        if self.transpose:
            y = x @ self.weight
            return (y if self.bias is None else y + self.bias,)
        return (F.linear(x, self.weight, self.bias),)

    def extra_repr(self) -> str:
        return (f"weight={list(self.weight.shape)}, axis={self.axis}, "
                f"transpose={self.transpose}, bias={self.bias is not None}")


class ScaleBias(nn.Module):
    """Scale and/or Bias: ``x * scale + bias``, each operand broadcast from its axis.

    The scale is the learned ``weight`` (when ``weight_shape`` is given) or the second
    bottom (``scale_from_bottom``); likewise the bias (``bias_shape`` / ``bias_from_bottom``).
    """

    def __init__(self, weight_shape: Shape | None, weight_axis: int, bias_shape: Shape | None,
                 bias_axis: int, scale_from_bottom: bool = False,
                 bias_from_bottom: bool = False) -> None:
        super().__init__()
        self.weight = None if weight_shape is None else _empty_param(weight_shape)
        self.bias = None if bias_shape is None else _empty_param(bias_shape)
        self.weight_axis, self.bias_axis = weight_axis, bias_axis
        self.scale_from_bottom, self.bias_from_bottom = scale_from_bottom, bias_from_bottom

    def forward(self, x: Tensor, operand: Tensor | None = None) -> Tops:
        n = x.dim()
        scale = operand if self.scale_from_bottom else self.weight
        bias = operand if self.bias_from_bottom else self.bias
        y = x
        if scale is not None:
            y = y * _broadcastable(scale, self.weight_axis, n)
        if bias is not None:
            y = y + _broadcastable(bias, self.bias_axis, n)
        return (y,)

    def extra_repr(self) -> str:
        return f"weight_axis={self.weight_axis}, bias_axis={self.bias_axis}"


# --------------------------------------------------------------------------------------
# Wrappers around netdsl.ops modules (tuple outputs)
# --------------------------------------------------------------------------------------


class LRN(ops.LRN):
    def forward(self, x: Tensor) -> Tops:  # type: ignore[override]
        return (super().forward(x),)


class BatchNorm(ops.CaffeBatchNorm):
    """Caffe BatchNorm; buffers ``mean``, ``variance``, ``scale_factor`` (zeros, as Caffe)."""

    def forward(self, x: Tensor) -> Tops:  # type: ignore[override]
        return (super().forward(x),)


class Pooling(ops.CaffePool2d):
    """Caffe pooling; with ``mask`` a second top holds each MAX window's argmax as
    ``h * W + w`` within its plane (Caffe's top mask, as floats; -1 for empty windows)."""

    def __init__(self, kernel_hw: tuple[int, int] | None, stride_hw: tuple[int, int],
                 pad_hw: tuple[int, int], method: str = "MAX", round_mode: str = "CEIL",
                 global_pooling: bool = False, mask: bool = False) -> None:
        super().__init__(kernel_hw, stride_hw, pad_hw, method, round_mode, global_pooling)
        self.mask = mask

    def forward(self, x: Tensor) -> Tops:  # type: ignore[override]
        y = super().forward(x)
        if not self.mask:
            return (y,)
        return (y, _max_pool_mask(x, self.kernel_hw, self.stride_hw, self.pad_hw,
                                  (y.shape[-2], y.shape[-1])).to(y.dtype))


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def _max_pool_mask(x: Tensor, kernel: tuple[int, int] | int | None, stride: tuple[int, int] | int,
                   pad: tuple[int, int] | int, out_hw: tuple[int, int]) -> Tensor:
    h, w = x.shape[-2], x.shape[-1]
    kh, kw = (h, w) if kernel is None else _pair(kernel)
    sh, sw = _pair(stride)
    ph, pw = _pair(pad)
    need_h, need_w = (out_hw[0] - 1) * sh + kh, (out_hw[1] - 1) * sw + kw
    xp = F.pad(x, (pw, max(0, need_w - w - pw), ph, max(0, need_h - h - ph)), value=-math.inf)
    _, idx = F.max_pool2d(xp, (kh, kw), (sh, sw), 0, return_indices=True)
    idx = idx[..., : out_hw[0], : out_hw[1]]
    wp = xp.shape[-1]
    row, col = idx // wp - ph, idx % wp - pw
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    return torch.where(inside, row * w + col, torch.full_like(idx, -1))


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


class DataInput(nn.Module):
    """Stands for a data layer: the compiler feeds its tops, so it is never called."""

    def __init__(self, layer_type: str) -> None:
        super().__init__()
        self.layer_type = layer_type

    def forward(self, *xs: Tensor) -> Tops:
        raise RuntimeError(
            f"{self.layer_type} tops are the net's inputs and are fed by the compiler; "
            "this module is not meant to be called"
        )

    def extra_repr(self) -> str:
        return self.layer_type


class DummyData(nn.Module):
    """Fresh tops of fixed shapes each call, filled as Caffe's fillers do."""

    def __init__(self, shapes: Sequence[Shape], fillers: Sequence[Filler]) -> None:
        super().__init__()
        self.shapes, self.fillers = [tuple(s) for s in shapes], list(fillers)
        self.register_buffer("_anchor", torch.empty(0), persistent=False)  # device and dtype

    def forward(self) -> Tops:
        a = self._anchor
        out = []
        for shape, filler in zip(self.shapes, self.fillers, strict=True):
            t = torch.empty(shape, dtype=a.dtype, device=a.device)
            fill_(t, filler, torch.default_generator)
            out.append(t)
        return tuple(out)

    def extra_repr(self) -> str:
        return f"shapes={self.shapes}"
