"""Torch functions that reproduce Caffe's layer arithmetic exactly.

Every function here is a pure function of tensors (plus Python configuration); the few
``nn.Module`` wrappers only hold configuration or, for batch norm, the statistics
buffers. Layer lowerings call these instead of the nearest ``torch.nn.functional``
op wherever the two disagree. The places where plain torch and Caffe differ are:

* **LRN** (``lrn``): ``F.local_response_norm`` agrees with Caffe for odd ``local_size``
  (its ``alpha`` is also divided by the size, so no conversion is needed) but is slow
  on CPU, and for even sizes it centres the window one channel lower than Caffe's
  loop. WITHIN_CHANNEL has no torch counterpart. Caffe's shift there is 1, not ``k``.
* **Pooling** (``caffe_pool2d``): Caffe only removes a ceil-mode window that starts
  in the padding when some pad is non-zero; torch always does, so with ``pad == 0``
  and ``kernel < stride`` Caffe can have one more output row or column, whose window
  lies entirely outside the image. Torch also requires ``pad <= kernel // 2`` and
  ``kernel <= input + 2 * pad``; Caffe only ``pad < kernel``. STOCHASTIC pooling has
  no torch counterpart.
* **SoftmaxWithLoss** (``softmax_with_loss``): Caffe clamps the probability at
  ``FLT_MIN`` (the loss saturates at about 87.34 per item) and has four normalisation
  modes, with the normaliser floored at 1.
* **Accuracy** (``accuracy``): a tie with the true class counts *against* the hit.
* **Eltwise MAX** (``eltwise``): the gradient goes to one input, chosen by Caffe's
  tie rule, where ``torch.maximum`` splits it between tied inputs.
* **BatchNorm** (``caffe_batch_norm``): Caffe keeps running *sums* and a scale factor
  instead of an exponential moving average, and has no affine part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "ACROSS_CHANNELS",
    "FLT_MAX",
    "FLT_MIN",
    "LRN",
    "WITHIN_CHANNEL",
    "BatchNormStats",
    "CaffeBatchNorm",
    "CaffePool2d",
    "accuracy",
    "caffe_batch_norm",
    "caffe_bn_global_stats",
    "caffe_pool2d",
    "caffe_pool_output_size",
    "eltwise",
    "loss_normalization",
    "lrn",
    "lrn_halo",
    "lrn_shard",
    "per_class_accuracy",
    "softmax_with_loss",
]

FLT_MIN = 1.1754943508222875e-38
"""C's ``FLT_MIN``; Caffe uses it (even for ``double`` blobs) in the softmax loss and
in stochastic pooling."""
FLT_MAX = 3.4028234663852886e38
"""C's ``FLT_MAX``; Caffe's max pooling and eltwise MAX start from ``-FLT_MAX``."""

_LOG_FLT_MIN = math.log(FLT_MIN)

ACROSS_CHANNELS = "ACROSS_CHANNELS"
WITHIN_CHANNEL = "WITHIN_CHANNEL"

# Windows larger than this are summed with one matmul against a banded matrix instead
# of one slice-add per channel offset (slice-adds cost ~size passes over the data, the
# matmul a fixed amount; on CPU they cross over at 9-13 channels on AlexNet's norm1).
_MATMUL_MIN_SIZE = 12


# --------------------------------------------------------------------------------------
# LRN
# --------------------------------------------------------------------------------------


def lrn_halo(local_size: int) -> tuple[int, int]:
    """Channels an ACROSS_CHANNELS window reaches below and above its own channel.

    Caffe pads ``pre_pad = (local_size - 1) // 2`` channels on the low side, so the
    window of channel ``c`` is ``[c - pre_pad, c - pre_pad + local_size - 1]``. For even
    sizes this is asymmetric: one more channel above than below.
    """
    _check_local_size(local_size)
    pre = (local_size - 1) // 2
    return pre, local_size - 1 - pre


def lrn(
    x: Tensor,
    local_size: int = 5,
    alpha: float = 1.0,
    beta: float = 0.75,
    k: float = 1.0,
    region: str = ACROSS_CHANNELS,
) -> Tensor:
    """Caffe's LRN layer (``lrn_layer.cpp``); defaults are ``caffe.proto``'s.

    ACROSS_CHANNELS: ``y = x * (k + alpha / local_size * sum_window x^2) ** -beta``, the
    window as in :func:`lrn_halo`, channels beyond the edge counting as zero. ``x`` is
    ``(N, C, *spatial)``; Caffe itself requires 4-D input and odd ``local_size``. Even
    sizes follow Caffe's forward loop (Caffe's setup rejects them).

    WITHIN_CHANNEL: ``y = x * (1 + alpha * avg) ** -beta`` where ``avg`` is Caffe's AVE
    pooling of ``x^2`` over ``local_size x local_size`` with stride 1 and pad
    ``(local_size - 1) // 2``; ``k`` is not used (Caffe's power layer shifts by 1). The
    AVE divisor counts padding, so it is ``local_size^2`` everywhere. Needs 4-D input
    and odd ``local_size`` (an even one would shrink the output).

    Gradients are exact (Caffe's backward is the true gradient). The ACROSS_CHANNELS
    path uses a custom autograd function, so double backward is not supported.
    """
    return lrn_shard(x, 0, 0, local_size, alpha, beta, k, region)


def lrn_shard(
    x_with_halo: Tensor,
    lo_halo: int,
    hi_halo: int,
    local_size: int = 5,
    alpha: float = 1.0,
    beta: float = 0.75,
    k: float = 1.0,
    region: str = ACROSS_CHANNELS,
) -> Tensor:
    """LRN of a channel slice of a larger blob, given neighbouring "halo" channels.

    ``x_with_halo`` holds ``lo_halo`` channels from below the slice, the slice itself,
    and ``hi_halo`` channels from above it, along dim 1. The result holds only the
    slice's channels and equals ``lrn(full)[:, start:stop]``: same arithmetic in the
    same summation order, so an LRN layer split by channels across devices matches the
    single-device forward once each side sends the other its border channels. It is
    bit for bit equal for ``local_size <= 12`` with beta 0.75, 0.5 or 1 (the usual
    case); otherwise it can differ in the last bit (BLAS blocking for the large-window
    matmul, vectorised ``pow`` rounding by memory position).

    How many halo channels to send: ``lrn_halo(local_size)`` gives ``(below, above)``.
    Send ``min(below, start)`` channels from below and ``min(above, C_total - stop)``
    from above. Channels the window needs but that are not supplied count as zero,
    which is exactly Caffe's treatment beyond the blob's edge and is wrong anywhere
    else; extra halo channels are ignored. For WITHIN_CHANNEL no halo is needed.

    Under autograd the halo channels receive gradient too (their contribution to this
    slice's outputs); to match the single-device gradient (up to summation order), send
    it back to the device that owns those channels and add it there.
    """
    if x_with_halo.dim() < 2:
        raise ValueError(f"LRN needs input of shape (N, C, ...), got {tuple(x_with_halo.shape)}")
    _check_local_size(local_size)
    region = region.upper()
    channels = x_with_halo.shape[1]
    if lo_halo < 0 or hi_halo < 0 or lo_halo + hi_halo >= channels:
        raise ValueError(f"halo ({lo_halo}, {hi_halo}) leaves no central channels of {channels}")
    if region == WITHIN_CHANNEL:
        central = x_with_halo.narrow(1, lo_halo, channels - lo_halo - hi_halo)
        return _lrn_within_channel(central, local_size, alpha, beta)
    if region != ACROSS_CHANNELS:
        raise ValueError(f"unknown LRN norm_region {region!r}")
    shape = x_with_halo.shape
    x3 = x_with_halo.reshape(shape[0], channels, -1)
    args = (lo_halo, hi_halo, int(local_size), float(alpha), float(beta), float(k))
    if torch.is_grad_enabled() and x3.requires_grad:
        y3 = _CrossChannelLRN.apply(x3, *args)
    else:
        y3 = _cross_channel_forward(x3, *args, keep_for_backward=False)[0]
    return y3.reshape(shape[0], channels - lo_halo - hi_halo, *shape[2:])


def _check_local_size(local_size: int) -> None:
    if int(local_size) != local_size or local_size < 1:
        raise ValueError(f"local_size must be a positive integer, got {local_size!r}")


def _band_sum(t: Tensor, c_out: int, first: int, size: int, bias: float = 0.0) -> Tensor:
    """``out[:, i] = bias + sum_{j < size} t[:, first + i + j]``, ``t`` zero outside its range.

    ``t`` is ``(N, C_t, S)``; the result is a new ``(N, c_out, S)`` tensor. Windows up to
    ``_MATMUL_MIN_SIZE`` are one slice-add per channel offset (memory-bound); larger ones
    a matmul with a banded 0/1 matrix. The slice-adds start from ``bias`` plus the
    window's centre term ``j = (size - 1) // 2`` and add the others in order of ``j``,
    skipping those out of range, so every output element is summed in the same order
    whatever slice of the channels is computed; this is what makes :func:`lrn_shard`
    bitwise equal to :func:`lrn`. The path depends on ``size`` only, for the same reason.
    """
    n, c_t, s = t.shape
    if size > _MATMUL_MIN_SIZE:
        i = torch.arange(c_out, device=t.device)[:, None]
        m = torch.arange(c_t, device=t.device)[None, :]
        d = m - i - first
        band = ((d >= 0) & (d < size)).to(t.dtype)
        out = torch.matmul(band, t)
        return out.add_(bias) if bias else out
    centre = first + (size - 1) // 2
    lo, hi = max(0, -centre), min(c_out, c_t - centre)
    if lo == 0 and hi == c_out:
        centre_term = t[:, centre : centre + c_out]
        out = centre_term + bias if bias else centre_term.clone()
    else:
        out = t.new_full((n, c_out, s), bias)
        if lo < hi:
            out[:, lo:hi] += t[:, lo + centre : hi + centre]
    for off in range(first, first + size):
        lo, hi = max(0, -off), min(c_out, c_t - off)
        if off != centre and lo < hi:
            out[:, lo:hi] += t[:, lo + off : hi + off]
    return out


def _neg_pow(s: Tensor, beta: float, inplace: bool = False) -> Tensor:
    """``s ** -beta``, with cheaper exact-enough forms for the common betas.

    ``pow`` with a fractional exponent costs ~4x ``rsqrt`` + ``sqrt`` on CPU; 0.75 is
    the beta of AlexNet, CaffeNet and GoogLeNet. The composed forms are within a few
    ulp of ``pow``. ``inplace`` reuses a temporary, which autograd cannot record.
    """
    if beta == 0.75:
        r = s.rsqrt()
        return r.mul_(r.sqrt()) if inplace else r * r.sqrt()
    if beta == 0.5:
        return s.rsqrt()
    if beta == 1.0:
        return s.reciprocal()
    return s.pow(-beta)


def _cross_channel_forward(
    x: Tensor,
    lo: int,
    hi: int,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    keep_for_backward: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Returns ``(y, p, q)`` with ``p = scale^-beta`` and ``q = p / scale`` (for backward)."""
    c_out = x.shape[1] - lo - hi
    pre = (size - 1) // 2
    # Caffe's order: scale = k, then += (alpha / size) * x^2 for each window channel.
    scale = _band_sum(x.square().mul_(alpha / size), c_out, lo - pre, size, bias=k)
    p = _neg_pow(scale, beta, inplace=True)
    y = x.narrow(1, lo, c_out) * p
    if not keep_for_backward:
        return y, None, None
    return y, p, p / scale


class _CrossChannelLRN(torch.autograd.Function):
    """ACROSS_CHANNELS LRN with Caffe's closed-form backward (CrossChannelBackward).

    ``dx = dy * scale^-beta - (2 alpha beta / size) * x * window^T(dy * y / scale)``,
    which is the exact gradient; done by hand it takes half the time or less of
    autograd through the same forward ops (AlexNet norm1 shape, CPU).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        lo: int,
        hi: int,
        size: int,
        alpha: float,
        beta: float,
        k: float,
    ) -> Tensor:
        y, p, q = _cross_channel_forward(x, lo, hi, size, alpha, beta, k, True)
        ctx.save_for_backward(x, p, q)
        ctx.config = (lo, hi, size, alpha, beta)  # type: ignore[attr-defined]
        return y

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, dy: Tensor
    ) -> tuple[Tensor | None, ...]:
        x, p, q = ctx.saved_tensors  # type: ignore[attr-defined]
        lo, hi, size, alpha, beta = ctx.config  # type: ignore[attr-defined]
        channels = x.shape[1]
        c_out = channels - lo - hi
        post = size - 1 - (size - 1) // 2
        xc = x.narrow(1, lo, c_out)
        ratio = dy * xc
        ratio.mul_(q)  # dy * y / scale
        grad = _band_sum(ratio, channels, -lo - post, size)
        cache_ratio = -2.0 * alpha * beta / size
        if lo == hi == 0:
            grad = torch.addcmul(dy * p, grad, x, value=cache_ratio)
        else:
            grad.mul_(x).mul_(cache_ratio)
            grad.narrow(1, lo, c_out).addcmul_(dy, p)
        return grad, None, None, None, None, None, None


def _lrn_within_channel(x: Tensor, local_size: int, alpha: float, beta: float) -> Tensor:
    if x.dim() != 4:
        raise ValueError(f"WITHIN_CHANNEL LRN needs 4-D input, got {tuple(x.shape)}")
    if local_size % 2 == 0:
        raise ValueError("WITHIN_CHANNEL LRN needs an odd local_size (as Caffe)")
    pad = (local_size - 1) // 2
    avg = caffe_pool2d(x.square(), local_size, 1, pad, "AVE")
    return x * _neg_pow(avg.mul(alpha).add_(1.0), beta)


class LRN(nn.Module):
    """Module form of :func:`lrn` (configuration only)."""

    def __init__(
        self,
        local_size: int = 5,
        alpha: float = 1.0,
        beta: float = 0.75,
        k: float = 1.0,
        region: str = ACROSS_CHANNELS,
    ) -> None:
        super().__init__()
        _check_local_size(local_size)
        region = region.upper()
        if region not in (ACROSS_CHANNELS, WITHIN_CHANNEL):
            raise ValueError(f"unknown LRN norm_region {region!r}")
        self.local_size, self.alpha, self.beta, self.k = local_size, alpha, beta, k
        self.region = region

    def forward(self, x: Tensor) -> Tensor:
        return lrn(x, self.local_size, self.alpha, self.beta, self.k, self.region)

    def extra_repr(self) -> str:
        return (
            f"local_size={self.local_size}, alpha={self.alpha}, beta={self.beta}, "
            f"k={self.k}, region={self.region}"
        )


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------

_Pair = int | Sequence[int]


def _pair(v: _Pair, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    t = tuple(int(e) for e in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def caffe_pool_output_size(
    in_size: int,
    kernel: int,
    stride: int,
    pad: int,
    round_mode: str = "CEIL",
    clip: bool | None = None,
) -> int:
    """Pooled size along one axis, as ``PoolingLayer::Reshape`` computes it.

    ``ceil((in + 2 pad - kernel) / stride) + 1`` (``floor`` for FLOOR); then, when
    ``clip``, one window less if the last one would start at or beyond
    ``in + pad`` (i.e. entirely inside the bottom/right padding). Caffe clips both axes
    when *any* pad is non-zero (``if (pad_h_ || pad_w_)``), which is why ``clip`` is
    separate from ``pad``; it defaults to ``pad > 0``. The result can be 0 or less when
    the kernel exceeds the padded input; callers should reject that.
    """
    if kernel < 1 or stride < 1 or pad < 0:
        raise ValueError(f"bad pooling geometry kernel={kernel} stride={stride} pad={pad}")
    span = in_size + 2 * pad - kernel
    round_mode = round_mode.upper()
    if round_mode == "CEIL":
        out = -(-span // stride) + 1
    elif round_mode == "FLOOR":
        out = span // stride + 1
    else:
        raise ValueError(f"unknown round_mode {round_mode!r}")
    if (pad > 0 if clip is None else clip) and (out - 1) * stride >= in_size + pad:
        out -= 1
    return out


def _torch_pool_output_size(in_size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """ATen's ``pooling_output_shape`` (dilation 1), valid for ``in + 2 pad >= kernel``."""
    out = (in_size + 2 * pad - kernel + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= in_size + pad:
        out -= 1
    return out


def _torch_pool_matches(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    ceil: bool,
    out_hw: tuple[int, int],
) -> bool:
    """Whether torch's max/avg_pool2d windows are exactly Caffe's for this geometry.

    Both place window ``i`` at ``i * stride - pad``, clip it to the image for MAX, and
    use the divisor ``(min(start + kernel, in + pad) - start)`` per axis for AVE with
    ``count_include_pad=True``; so they agree whenever torch accepts the geometry and
    produces the same number of windows.
    """
    for n, kk, s, p, o in zip(in_hw, kernel, stride, pad, out_hw, strict=True):
        if 2 * p > kk or n + 2 * p < kk:
            return False
        if _torch_pool_output_size(n, kk, s, p, ceil) != o:
            return False
    return True


def _window_extent(in_size: int, kernel: int, stride: int, pad: int, out: int) -> tuple[int, int]:
    """Padding ``(before, after)`` so that all ``out`` windows fit in the padded axis."""
    need = (out - 1) * stride + kernel
    return pad, max(0, need - in_size - pad)


def _pad_windows(
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    value: float,
) -> Tensor:
    h0, h1 = _window_extent(x.shape[-2], kernel[0], stride[0], pad[0], out_hw[0])
    w0, w1 = _window_extent(x.shape[-1], kernel[1], stride[1], pad[1], out_hw[1])
    if h0 == h1 == w0 == w1 == 0:
        return x
    return F.pad(x, (w0, w1, h0, h1), value=value)


def _window_sums(
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
) -> Tensor:
    """Sums of ``x`` over each Caffe window clipped to the image (zero outside)."""
    xp = _pad_windows(x, kernel, stride, pad, out_hw, 0.0)
    sums = F.avg_pool2d(xp, kernel, stride, 0, divisor_override=1)
    return sums[..., : out_hw[0], : out_hw[1]]


def _ave_divisor(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
    like: Tensor,
) -> Tensor:
    """Caffe's AVE ``pool_size``: window clipped to the padded (not the real) image.

    Computed before clipping to the image, so padding counts but the area beyond the
    padded border does not. A window past the image (pad 0, kernel < stride) gets a
    size of 0 (starting at the border) or less, hence Caffe's 0 / 0 = NaN or -0.0;
    kept as is.
    """
    sizes = []
    for n, kk, s, p, o in zip(in_hw, kernel, stride, pad, out_hw, strict=True):
        start = torch.arange(o, dtype=torch.int64) * s - p
        end = torch.clamp(start + kk, max=n + p)
        sizes.append(end - start)
    div = sizes[0][:, None] * sizes[1][None, :]
    return div.to(dtype=like.dtype, device=like.device)


def _empty_windows(
    in_hw: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    out_hw: tuple[int, int],
) -> Tensor | None:
    """Mask of windows that start past the image (possible only with pad 0)."""
    empties = []
    for n, s, p, o in zip(in_hw, stride, pad, out_hw, strict=True):
        starts = torch.arange(o, dtype=torch.int64) * s - p
        empties.append(starts >= n)
    mask = empties[0][:, None] | empties[1][None, :]
    return mask if bool(mask.any()) else None


def caffe_pool2d(
    x: Tensor,
    kernel_hw: _Pair | None = None,
    stride_hw: _Pair = 1,
    pad_hw: _Pair = 0,
    method: str = "MAX",
    round_mode: str = "CEIL",
    global_pooling: bool = False,
    training: bool = False,
) -> Tensor:
    """Caffe's Pooling layer (``pooling_layer.cpp`` / ``.cu``) on ``(N, C, H, W)``.

    Output size as :func:`caffe_pool_output_size`. MAX takes the maximum over the window
    clipped to the image (padding never wins); the gradient goes to the first maximum in
    row-major order, as in Caffe's mask. AVE sums the clipped window and divides by
    Caffe's ``pool_size`` (see ``_ave_divisor``). STOCHASTIC (test phase, i.e.
    ``training=False``) is Caffe's ``StoPoolForwardTest``: ``sum(x^2) / (FLT_MIN +
    sum(x))`` over the clipped window; Caffe has no CPU and no padded version of it,
    and no test-phase backward (autograd's gradient of this formula is returned).

    Uses ``F.max_pool2d`` / ``F.avg_pool2d`` directly when their windows are Caffe's
    (the usual case), and otherwise pads explicitly and crops.

    A window lying entirely outside the image (possible only with pad 0, kernel <
    stride, CEIL) gets no gradient and yields what Caffe yields: ``-FLT_MAX`` for MAX,
    0 for STOCHASTIC, and for AVE Caffe's ``0 / pool_size`` with a ``pool_size`` of 0
    or less: NaN if the window starts exactly at the image border, -0.0 beyond it.

    Known residual differences: with NaN inputs Caffe's MAX skips the NaN (``>`` is
    false) while torch propagates it; a window whose values are all ``-inf`` gives
    ``-inf`` here and ``-FLT_MAX`` in Caffe (except the empty windows above).
    """
    if x.dim() not in (3, 4):
        raise ValueError(f"pooling needs (N, C, H, W) input, got {tuple(x.shape)}")
    method = method.upper()
    if method not in ("MAX", "AVE", "STOCHASTIC"):
        raise ValueError(f"unknown pooling method {method!r}")
    in_hw = (int(x.shape[-2]), int(x.shape[-1]))
    stride, pad = _pair(stride_hw, "stride"), _pair(pad_hw, "pad")
    if global_pooling:
        if stride != (1, 1) or pad != (0, 0):
            raise ValueError("with global_pooling only pad = 0 and stride = 1 are allowed")
        kernel = in_hw
    else:
        if kernel_hw is None:
            raise ValueError("pooling needs kernel_hw unless global_pooling")
        kernel = _pair(kernel_hw, "kernel")
    if min(kernel) < 1 or min(stride) < 1 or min(pad) < 0:
        raise ValueError(f"bad pooling geometry kernel={kernel} stride={stride} pad={pad}")
    if any(pad):
        if method == "STOCHASTIC":
            raise ValueError("Caffe implements padding only for AVE and MAX pooling")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise ValueError(f"pad {pad} must be smaller than kernel {kernel}")
    if method == "STOCHASTIC" and training:
        raise ValueError(
            "STOCHASTIC pooling is implemented for the test phase only (training=False)"
        )
    clip = any(pad)
    out_hw = (
        caffe_pool_output_size(in_hw[0], kernel[0], stride[0], pad[0], round_mode, clip),
        caffe_pool_output_size(in_hw[1], kernel[1], stride[1], pad[1], round_mode, clip),
    )
    if min(out_hw) < 1:
        raise ValueError(f"pooling output would be empty: {out_hw} from input {in_hw}")

    if method == "STOCHASTIC":
        total = _window_sums(x, kernel, stride, pad, out_hw)
        squares = _window_sums(x.square(), kernel, stride, pad, out_hw)
        return squares / (total + FLT_MIN)

    ceil = round_mode.upper() == "CEIL"
    if _torch_pool_matches(in_hw, kernel, stride, pad, ceil, out_hw):
        if method == "MAX":
            return F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil)
        return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil, count_include_pad=True)

    if method == "AVE":
        sums = _window_sums(x, kernel, stride, pad, out_hw)
        return sums / _ave_divisor(in_hw, kernel, stride, pad, out_hw, x)
    xp = _pad_windows(x, kernel, stride, pad, out_hw, -math.inf)
    out = F.max_pool2d(xp, kernel, stride, 0)[..., : out_hw[0], : out_hw[1]]
    empty = _empty_windows(in_hw, stride, pad, out_hw)
    if empty is not None:
        out = torch.where(empty.to(out.device), out.new_tensor(-FLT_MAX), out)
    return out


class CaffePool2d(nn.Module):
    """Module form of :func:`caffe_pool2d`; ``training`` follows ``self.training``."""

    def __init__(
        self,
        kernel_hw: _Pair | None = None,
        stride_hw: _Pair = 1,
        pad_hw: _Pair = 0,
        method: str = "MAX",
        round_mode: str = "CEIL",
        global_pooling: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_hw, self.stride_hw, self.pad_hw = kernel_hw, stride_hw, pad_hw
        self.method, self.round_mode, self.global_pooling = method, round_mode, global_pooling

    def forward(self, x: Tensor) -> Tensor:
        return caffe_pool2d(
            x,
            self.kernel_hw,
            self.stride_hw,
            self.pad_hw,
            self.method,
            self.round_mode,
            self.global_pooling,
            self.training,
        )

    def extra_repr(self) -> str:
        return (
            f"method={self.method}, kernel={self.kernel_hw}, stride={self.stride_hw}, "
            f"pad={self.pad_hw}, round_mode={self.round_mode}, global={self.global_pooling}"
        )


# --------------------------------------------------------------------------------------
# Losses and metrics
# --------------------------------------------------------------------------------------

_NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def loss_normalization(normalization: str | None = None, normalize: bool | None = None) -> str:
    """Caffe's rule for ``loss_param``: an explicit ``normalization`` wins; otherwise the
    legacy ``normalize`` maps ``true -> VALID`` and ``false -> BATCH_SIZE``; default VALID.
    """
    if normalization is not None:
        mode = normalization.upper()
        if mode not in _NORMALIZATIONS:
            raise ValueError(f"unknown loss normalization {normalization!r}")
        return mode
    if normalize is not None:
        return "VALID" if normalize else "BATCH_SIZE"
    return "VALID"


def _split_axis(x: Tensor, axis: int) -> tuple[int, int, int, int]:
    """``(axis, outer, channels, inner)`` as Caffe's ``CanonicalAxisIndex``/``count``."""
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} out of range for shape {tuple(x.shape)}")
    axis %= x.dim()
    outer = math.prod(x.shape[:axis])
    inner = math.prod(x.shape[axis + 1 :])
    return axis, outer, int(x.shape[axis]), inner


def _labels_2d(labels: Tensor, outer: int, inner: int) -> Tensor:
    if labels.numel() != outer * inner:
        raise ValueError(
            f"number of labels ({labels.numel()}) must match number of predictions "
            f"({outer} x {inner})"
        )
    # static_cast<int> truncates toward zero, as .long() does for float labels.
    return labels.reshape(outer, inner).to(torch.int64)


def softmax_with_loss(
    logits: Tensor,
    labels: Tensor,
    axis: int = 1,
    ignore_label: int | None = None,
    normalization: str | None = "VALID",
    loss_weight: float = 1.0,
    normalize: bool | None = None,
) -> Tensor:
    """Caffe's SoftmaxWithLoss (``softmax_loss_layer.cpp``), a 0-dim tensor.

    ``labels`` has the shape of ``logits`` without ``axis`` (any shape with that many
    elements is accepted, as in Caffe; float labels are truncated). The loss is
    ``sum_valid -log(max(p_label, FLT_MIN)) / max(1, normalizer) * loss_weight`` with
    the normaliser from ``normalization`` (FULL: all items, VALID: non-ignored items,
    BATCH_SIZE: the product of dims before ``axis``, NONE: 1). ``normalization=None``
    with legacy ``normalize`` resolves as :func:`loss_normalization`.

    ``loss_weight`` is applied here, so the result is the layer's contribution to the
    net objective; Caffe's own top blob holds the value for ``loss_weight = 1``. The
    gradient is Caffe's ``(p - onehot) * loss_weight / normaliser`` (0 for ignored
    items), including where the ``FLT_MIN`` clamp is active.
    """
    mode = loss_normalization(normalization, normalize)
    axis, outer, channels, inner = _split_axis(logits, axis)
    lab = _labels_2d(labels.to(logits.device), outer, inner)
    logp = F.log_softmax(logits.reshape(outer, channels, inner), dim=1)
    if ignore_label is None:
        valid = None
        safe = lab
    else:
        valid = lab != ignore_label
        safe = torch.where(valid, lab, torch.zeros_like(lab))
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    # -log(max(p, FLT_MIN)) == min(-log p, -log FLT_MIN); the clamp is forward-only,
    # Caffe's backward ignores it.
    nll = nll - (nll - nll.clamp(max=-_LOG_FLT_MIN)).detach()
    if valid is not None:
        nll = torch.where(valid, nll, torch.zeros_like(nll))
    total = nll.sum()
    if mode == "FULL":
        normalizer: Tensor | float = float(outer * inner)
    elif mode == "VALID":
        normalizer = float(outer * inner) if valid is None else valid.sum().to(total.dtype)
    elif mode == "BATCH_SIZE":
        normalizer = float(outer)
    else:
        normalizer = 1.0
    if isinstance(normalizer, Tensor):
        normalizer = normalizer.clamp(min=1.0)
    else:
        normalizer = max(1.0, normalizer)
    return total / normalizer * loss_weight


@torch.no_grad()
def _accuracy_hits(
    scores: Tensor, labels: Tensor, top_k: int, axis: int, ignore_label: int | None
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Per item: hit (bool), counted (bool), safe label; plus the number of classes."""
    axis, outer, channels, inner = _split_axis(scores, axis)
    if not 1 <= top_k <= channels:
        raise ValueError(f"top_k must be in [1, {channels}] (the number of classes), got {top_k}")
    lab = _labels_2d(labels.to(scores.device), outer, inner)
    s = scores.reshape(outer, channels, inner)
    if ignore_label is None:
        valid = torch.ones_like(lab, dtype=torch.bool)
        safe = lab
    else:
        valid = lab != ignore_label
        safe = torch.where(valid, lab, torch.zeros_like(lab))
    true_score = s.gather(1, safe.unsqueeze(1))
    # Caffe: num_better_predictions starts at -1 and counts scores >= the true one,
    # the true class included; a hit if fewer than top_k. So ties count against.
    better = (s >= true_score).sum(1) - 1
    return (better < top_k) & valid, valid, safe, channels


def accuracy(
    scores: Tensor,
    labels: Tensor,
    top_k: int = 1,
    axis: int = 1,
    ignore_label: int | None = None,
) -> Tensor:
    """Caffe's Accuracy layer (``accuracy_layer.cpp``): top-k hit rate, a 0-dim tensor.

    An item is a hit when fewer than ``top_k`` *other* classes score ``>=`` the true
    class (Caffe counts ``bottom >= prob_of_true_class`` starting from -1), so a tie
    with the true class counts against it. Ignored items are not counted; with no
    counted items the accuracy is 0. Not differentiable.
    """
    hit, valid, _, _ = _accuracy_hits(scores, labels, top_k, axis, ignore_label)
    count = valid.sum()
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    if int(count) == 0:
        return torch.zeros((), dtype=dtype, device=scores.device)
    return hit.sum().to(dtype) / count.to(dtype)


def per_class_accuracy(
    scores: Tensor,
    labels: Tensor,
    top_k: int = 1,
    axis: int = 1,
    ignore_label: int | None = None,
) -> Tensor:
    """Caffe's optional second Accuracy top: hit rate per true class (0 if unseen)."""
    hit, valid, safe, channels = _accuracy_hits(scores, labels, top_k, axis, ignore_label)
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    flat = safe.reshape(-1)
    seen = torch.zeros(channels, dtype=dtype, device=scores.device)
    seen.index_add_(0, flat, valid.reshape(-1).to(dtype))
    hits = torch.zeros(channels, dtype=dtype, device=scores.device)
    hits.index_add_(0, flat, hit.reshape(-1).to(dtype))
    return torch.where(seen > 0, hits / seen.clamp(min=1), torch.zeros_like(hits))


# --------------------------------------------------------------------------------------
# Eltwise
# --------------------------------------------------------------------------------------


def eltwise(
    inputs: Sequence[Tensor], op: str = "SUM", coeffs: Sequence[float] | None = None
) -> Tensor:
    """Caffe's Eltwise layer: ``SUM`` (optionally weighted by ``coeffs``), ``PROD``, ``MAX``.

    Like Caffe: at least two inputs of identical shape (no broadcasting), and ``coeffs``
    only for SUM, one per input. MAX picks, per element, the input Caffe's mask picks,
    and the whole gradient goes to it: between inputs 0 and 1 a tie goes to input 1
    (Caffe tests ``a > b``), a later input wins only if strictly greater. Caffe's
    ``stable_prod_grad`` only changes how the PROD gradient is computed, not its value.
    """
    op = op.upper()
    if len(inputs) < 2:
        raise ValueError("Eltwise needs at least two inputs")
    shape = inputs[0].shape
    for t in inputs[1:]:
        if t.shape != shape:
            raise ValueError(
                f"Eltwise inputs must have equal shapes: {tuple(shape)} vs {tuple(t.shape)}"
            )
    if coeffs is not None and len(coeffs) > 0:
        if op != "SUM":
            raise ValueError("Eltwise takes coefficients only for SUM")
        if len(coeffs) != len(inputs):
            raise ValueError(
                f"Eltwise needs one coefficient per input ({len(inputs)}), got {len(coeffs)}"
            )
    else:
        coeffs = None
    if op == "SUM":
        if coeffs is None or all(c == 1 for c in coeffs):
            out = inputs[0] + inputs[1]
            for t in inputs[2:]:
                out = out + t
            return out
        out = inputs[0] * coeffs[0]
        for t, c in zip(inputs[1:], coeffs[1:], strict=True):
            out = out + t * c
        return out
    if op == "PROD":
        out = inputs[0] * inputs[1]
        for t in inputs[2:]:
            out = out * t
        return out
    if op == "MAX":
        a, b = inputs[0], inputs[1]
        out = torch.where(a > b, a, b)
        for t in inputs[2:]:
            out = torch.where(t > out, t, out)
        return out
    raise ValueError(f"unknown Eltwise operation {op!r}")


# --------------------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------------------


class BatchNormStats(NamedTuple):
    """Caffe's three BatchNorm blobs: running sums and their scale factor (shape (1,))."""

    mean: Tensor
    variance: Tensor
    scale_factor: Tensor


def caffe_bn_global_stats(
    mean_blob: Tensor, variance_blob: Tensor, scale_factor_blob: Tensor
) -> tuple[Tensor, Tensor]:
    """The mean and variance Caffe uses with ``use_global_stats``: blobs / scale factor,
    or zeros when the factor is 0. These are also torch BatchNorm's running stats."""
    sf = scale_factor_blob.reshape(-1)[0]
    inv = torch.where(sf == 0, torch.zeros_like(sf), 1.0 / sf)
    return mean_blob * inv, variance_blob * inv


def caffe_batch_norm(
    x: Tensor,
    mean_blob: Tensor,
    variance_blob: Tensor,
    scale_factor_blob: Tensor,
    use_global_stats: bool,
    moving_average_fraction: float = 0.999,
    eps: float = 1e-5,
) -> tuple[Tensor, BatchNormStats | None]:
    """Caffe's BatchNorm forward (``batch_norm_layer.cpp``); no scale/shift (that is
    Caffe's separate Scale layer). ``x`` is ``(N, C, *spatial)`` (or ``(N,)``: one channel).

    With ``use_global_stats`` (Caffe's default in TEST): normalise with
    :func:`caffe_bn_global_stats`; returns ``(y, None)``.

    Otherwise normalise with the batch mean and the *biased* batch variance over
    ``N * spatial`` items, and return the updated blobs (detached, new tensors; the
    inputs are not modified): ``scale_factor = maf * scale_factor + 1``,
    ``mean = maf * mean + batch_mean``, ``variance = maf * variance + m / (m - 1) *
    batch_var`` with ``m = N * spatial`` (factor 1 if ``m == 1``). ``y = (x - mean) /
    sqrt(var + eps)``; autograd gives Caffe's backward in both modes.

    Unlike torch's BatchNorm (running = (1 - momentum) * running + momentum * batch),
    the effective estimate ``blob / scale_factor`` is a *normalised* weighted average:
    after the first training step it equals that batch's statistics exactly.
    """
    if x.dim() == 1:
        x3 = x.reshape(-1, 1, 1)
    elif x.dim() >= 2:
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
    else:
        raise ValueError("BatchNorm needs at least one axis")
    channels = x3.shape[1]
    if mean_blob.numel() != channels or variance_blob.numel() != channels:
        raise ValueError(
            f"BatchNorm blobs have {mean_blob.numel()}/{variance_blob.numel()} entries "
            f"for {channels} channels"
        )
    new_stats = None
    if use_global_stats:
        mean, var = caffe_bn_global_stats(
            mean_blob.reshape(-1), variance_blob.reshape(-1), scale_factor_blob
        )
        mean, var = mean.to(x.dtype), var.to(x.dtype)
    else:
        mean = x3.mean(dim=(0, 2))
        centred = x3 - mean[None, :, None]
        var = centred.square().mean(dim=(0, 2))
        with torch.no_grad():
            m = x3.shape[0] * x3.shape[2]
            correction = m / (m - 1) if m > 1 else 1.0
            maf = moving_average_fraction
            new_stats = BatchNormStats(
                mean=(mean_blob.reshape(-1) * maf + mean.detach()).reshape(mean_blob.shape),
                variance=(variance_blob.reshape(-1) * maf + var.detach() * correction).reshape(
                    variance_blob.shape
                ),
                scale_factor=scale_factor_blob * maf + 1.0,
            )
    y = (x3 - mean[None, :, None]) / (var + eps).sqrt()[None, :, None]
    return y.reshape(x.shape), new_stats


class CaffeBatchNorm(nn.Module):
    """Caffe BatchNorm owning its three blobs as buffers (``mean``, ``variance``,
    ``scale_factor``), named as Caffe orders them, so weights load blob-for-blob.

    ``use_global_stats=None`` follows Caffe's default: global stats in eval (TEST),
    batch stats and buffer updates in train.
    """

    mean: Tensor
    variance: Tensor
    scale_factor: Tensor

    def __init__(
        self,
        channels: int,
        use_global_stats: bool | None = None,
        moving_average_fraction: float = 0.999,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))
        self.use_global_stats = use_global_stats
        self.moving_average_fraction = moving_average_fraction
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        use_global = not self.training if self.use_global_stats is None else self.use_global_stats
        y, stats = caffe_batch_norm(
            x,
            self.mean,
            self.variance,
            self.scale_factor,
            use_global,
            self.moving_average_fraction,
            self.eps,
        )
        if stats is not None:
            with torch.no_grad():
                self.mean.copy_(stats.mean)
                self.variance.copy_(stats.variance)
                self.scale_factor.copy_(stats.scale_factor)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.mean.numel()}, use_global_stats={self.use_global_stats}, "
            f"moving_average_fraction={self.moving_average_fraction}, eps={self.eps}"
        )
