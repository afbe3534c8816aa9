"""Caffe's arithmetic on sizes and windows, once, without torch.

The layer types' shape rules and the torch kernels both call these, so a formula that
decides a blob's shape cannot drift from the one that computes it. Each function is
ported from the Caffe source it names; none imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = [
    "FLT_MAX",
    "FLT_MIN",
    "ReshapeError",
    "conv_out_size",
    "deconv_out_size",
    "empty_windows",
    "flatten_shape",
    "lrn_window",
    "pool_divisors",
    "pool_padding",
    "pooled_size",
    "reshape_shape",
    "torch_pool_matches",
]

FLT_MIN = 1.1754943508222875e-38
"""C's ``FLT_MIN``; Caffe uses it (even for ``double`` blobs) in the softmax loss and in
stochastic pooling."""
FLT_MAX = 3.4028234663852886e38
"""C's ``FLT_MAX``; Caffe's max pooling and eltwise MAX start from ``-FLT_MAX``."""


def _count(dims: Iterable[int]) -> int:
    return math.prod(dims)


# --------------------------------------------------------------------------------------
# Convolution (conv_layer.cpp / deconv_layer.cpp: compute_output_shape)
# --------------------------------------------------------------------------------------


def conv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """``(size + 2 pad - (dilation (kernel - 1) + 1)) / stride + 1``, rounded down."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def deconv_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    """``stride (size - 1) + dilation (kernel - 1) + 1 - 2 pad``."""
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - 2 * pad


# --------------------------------------------------------------------------------------
# Pooling (pooling_layer.cpp: PoolingLayer::Reshape, Forward_cpu)
# --------------------------------------------------------------------------------------


def pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True,
                clip: bool | None = None) -> int:
    """Pooled size along one axis, line for line as ``PoolingLayer::Reshape``.

    ``ceil((size + 2 pad - kernel) / stride) + 1`` (``floor`` when not ``ceil``); then,
    when ``clip``, one window less if the last one would start at or beyond ``size +
    pad`` (entirely inside the bottom/right padding). Caffe tests ``if (pad_h_ ||
    pad_w_)``: the clip applies to both axes as soon as either is padded, which is why
    ``clip`` is separate from ``pad``; it defaults to ``pad > 0``. The result can be 0 or
    less when the kernel exceeds the padded input; callers reject that.
    """
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if (pad > 0 if clip is None else clip) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _torch_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """ATen's ``pooling_output_shape`` (dilation 1), valid for ``size + 2 pad >= kernel``."""
    out = (size + 2 * pad - kernel + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def torch_pool_matches(in_hw: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       pad: Sequence[int], ceil: bool, out_hw: Sequence[int]) -> bool:
    """Whether torch's ``max_pool2d``/``avg_pool2d`` windows are exactly Caffe's here.

    Both place window ``i`` at ``i * stride - pad``, clip it to the image for MAX, and
    divide AVE by ``min(start + kernel, size + pad) - start`` per axis with
    ``count_include_pad=True``; so they agree whenever torch accepts the geometry
    (``pad <= kernel / 2``, ``kernel <= size + 2 pad``) and makes as many windows.
    """
    for n, k, s, p, o in zip(in_hw, kernel, stride, pad, out_hw, strict=True):
        if 2 * p > k or n + 2 * p < k or _torch_pooled_size(n, k, s, p, ceil) != o:
            return False
    return True


def pool_padding(size: int, kernel: int, stride: int, pad: int, out: int) -> tuple[int, int]:
    """Padding ``(before, after)`` so that all ``out`` windows fit in the padded axis."""
    need = (out - 1) * stride + kernel
    return pad, max(0, need - size - pad)


def pool_divisors(size: int, kernel: int, stride: int, pad: int, out: int) -> list[int]:
    """Caffe's AVE ``pool_size`` along one axis: each window clipped to the *padded*
    input (padding counts, the area past it does not). A window past the input (pad 0,
    kernel < stride) gets 0 or less, hence Caffe's 0 / 0 = NaN or -0.0."""
    return [min(i * stride - pad + kernel, size + pad) - (i * stride - pad) for i in range(out)]


def empty_windows(size: int, stride: int, pad: int, out: int) -> list[bool]:
    """Which windows start past the input along one axis (possible only with pad 0)."""
    return [i * stride - pad >= size for i in range(out)]


# --------------------------------------------------------------------------------------
# LRN (lrn_layer.cpp)
# --------------------------------------------------------------------------------------


def lrn_window(local_size: int) -> tuple[int, int]:
    """Channels an ACROSS_CHANNELS window reaches below and above its own channel.

    Caffe pads ``pre_pad = (local_size - 1) / 2`` channels on the low side, so the window
    of channel ``c`` is ``[c - pre_pad, c - pre_pad + local_size - 1]``; for even sizes
    one more channel above than below. It is also the halo a channel-split LRN needs.
    """
    if int(local_size) != local_size or local_size < 1:
        raise ValueError(f"local_size must be a positive integer, got {local_size!r}")
    pre = (local_size - 1) // 2
    return pre, local_size - 1 - pre


# --------------------------------------------------------------------------------------
# Flatten and Reshape (flatten_layer.cpp, reshape_layer.cpp)
# --------------------------------------------------------------------------------------


def flatten_shape(bottom: Sequence[int], start: int, end: int) -> tuple[int, ...]:
    """``FlattenLayer::Reshape`` with canonical axes. ``end == start - 1`` is legal in
    Caffe (an empty range): it inserts an axis of size 1 before ``start``."""
    return (*bottom[:start], _count(bottom[start:end + 1]), *bottom[end + 1:])


class ReshapeError(ValueError):
    """A violated ReshapeLayer CHECK: the message and the field it concerns."""

    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.field_name = field_name


def reshape_shape(bottom: Sequence[int], dims: Sequence[int], axis: int,
                  num_axes: int) -> tuple[int, ...]:
    """``ReshapeLayer::LayerSetUp`` + ``Reshape``, step for step.

    Bottom axes [start, end) are replaced by ``dims``; a 0 copies the bottom dim at the
    *same position* (start + i, which may lie outside the replaced range), a -1 takes
    whatever count is left.
    """
    n = len(bottom)
    copy_axes = [i for i, d in enumerate(dims) if d == 0]
    inferred = [i for i, d in enumerate(dims) if d == -1]
    if len(inferred) > 1:
        raise ReshapeError("shape has more than one -1; at most one dim can be inferred",
                           "shape")
    if any(d < -1 for d in dims):
        raise ReshapeError(f"shape {list(dims)} has a dim below -1", "shape")
    start = axis if axis >= 0 else n + axis + 1
    if not 0 <= start <= n:
        raise ReshapeError(f"axis {axis} is out of range for a {n}-D bottom", "axis")
    if num_axes < -1:
        raise ReshapeError(f"num_axes must be >= 0, or -1 for all; got {num_axes}", "num_axes")
    end = n if num_axes == -1 else start + num_axes
    if end > n:
        raise ReshapeError(
            f"axis + num_axes = {end} is past the {n} axes of the bottom", "num_axes"
        )
    top = [*bottom[:start], *dims, *bottom[end:]]
    for i in copy_axes:
        if start + i >= n:
            raise ReshapeError(
                f"shape has a 0 at position {i}, but the bottom has no axis {start + i} to copy",
                "shape",
            )
        top[start + i] = bottom[start + i]
    total = _count(bottom)
    if inferred:
        known = _count(d for i, d in enumerate(top) if i != start + inferred[0])
        if known == 0 or total % known:
            raise ReshapeError(
                f"the bottom's {total} values are not divisible by the product of the "
                f"other dims ({known})", "shape",
            )
        top[start + inferred[0]] = total // known
    if _count(top) != total:
        raise ReshapeError(
            f"the new shape {top} holds {_count(top)} values, the bottom {list(bottom)} "
            f"holds {total}", "shape",
        )
    return tuple(top)
