"""Caffe's LRN (``lrn_layer.cpp``), and the LRN of one channel shard given its halo."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..caffe_math import lrn_window
from .pooling import pool2d

__all__ = ["ACROSS_CHANNELS", "WITHIN_CHANNEL", "lrn", "lrn_shard"]

ACROSS_CHANNELS = "ACROSS_CHANNELS"
WITHIN_CHANNEL = "WITHIN_CHANNEL"

# Windows larger than this are summed with one matmul against a banded matrix instead
# of one slice-add per channel offset (slice-adds cost ~size passes over the data, the
# matmul a fixed amount; on CPU they cross over at 9-13 channels on AlexNet's norm1).
_MATMUL_MIN_SIZE = 12


def lrn(x: Tensor, local_size: int = 5, alpha: float = 1.0, beta: float = 0.75,
        k: float = 1.0, region: str = ACROSS_CHANNELS) -> Tensor:
    """Caffe's LRN layer; defaults are ``caffe.proto``'s.

    ACROSS_CHANNELS: ``y = x * (k + alpha / local_size * sum_window x^2) ** -beta``, the
    window as :func:`netdsl.caffe_math.lrn_window`, channels beyond the edge counting as
    zero. ``x`` is ``(N, C, *spatial)``; Caffe itself requires 4-D input and odd
    ``local_size``. Even sizes follow Caffe's forward loop (Caffe's setup rejects them).

    WITHIN_CHANNEL: ``y = x * (1 + alpha * avg) ** -beta`` where ``avg`` is Caffe's AVE
    pooling of ``x^2`` over ``local_size x local_size`` with stride 1 and pad
    ``(local_size - 1) // 2``; ``k`` is not used (Caffe's power layer shifts by 1). The
    AVE divisor counts padding, so it is ``local_size^2`` everywhere.

    Gradients are exact (Caffe's backward is the true gradient). The ACROSS_CHANNELS
    path uses a custom autograd function, so double backward is not supported.
    """
    return lrn_shard(x, 0, 0, local_size, alpha, beta, k, region)


def lrn_shard(x_with_halo: Tensor, below: int, above: int, local_size: int = 5,
              alpha: float = 1.0, beta: float = 0.75, k: float = 1.0,
              region: str = ACROSS_CHANNELS) -> Tensor:
    """LRN of a channel slice of a larger blob, given neighbouring "halo" channels.

    ``x_with_halo`` holds ``below`` channels from below the slice, the slice itself, and
    ``above`` channels from above it, along dim 1. The result holds only the slice's
    channels and equals ``lrn(full)[:, start:stop]``: same arithmetic in the same
    summation order, so an LRN split by channels across devices matches the one-device
    forward once each side sends the other its border channels. It is bit for bit equal
    for ``local_size <= 12`` with beta 0.75, 0.5 or 1 (the usual case); otherwise it can
    differ in the last bit (BLAS blocking for the large-window matmul).

    How many halo channels to send: ``lrn_window(local_size)`` gives ``(below, above)``;
    send ``min(below, start)`` from below and ``min(above, C_total - stop)`` from above.
    Channels the window needs but that are not supplied count as zero, which is exactly
    Caffe's treatment beyond the blob's edge. WITHIN_CHANNEL needs no halo.

    Under autograd the halo channels receive gradient too (their contribution to this
    slice's outputs); autograd sends it back to the device that owns those channels.
    """
    if x_with_halo.dim() < 2:
        raise ValueError(f"LRN needs input of shape (N, C, ...), got {tuple(x_with_halo.shape)}")
    lrn_window(local_size)  # checks local_size
    region = region.upper()
    channels = x_with_halo.shape[1]
    if below < 0 or above < 0 or below + above >= channels:
        raise ValueError(f"halo ({below}, {above}) leaves no central channels of {channels}")
    if region == WITHIN_CHANNEL:
        central = x_with_halo.narrow(1, below, channels - below - above)
        return _lrn_within_channel(central, local_size, alpha, beta)
    if region != ACROSS_CHANNELS:
        raise ValueError(f"unknown LRN norm_region {region!r}")
    shape = x_with_halo.shape
    x3 = x_with_halo.reshape(shape[0], channels, -1)
    args = (below, above, int(local_size), float(alpha), float(beta), float(k))
    if torch.compiler.is_compiling():
        y3 = _cross_channel_traced(x3, *args)
    elif torch.is_grad_enabled() and x3.requires_grad:
        y3 = _CrossChannelLRN.apply(x3, *args)  # type: ignore[no-untyped-call]  # torch leaves apply unannotated
    else:
        y3 = _cross_channel_forward(x3, *args, keep_for_backward=False)[0]
    return y3.reshape(shape[0], channels - below - above, *shape[2:])


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


def _cross_channel_forward(x: Tensor, lo: int, hi: int, size: int, alpha: float, beta: float,
                           k: float, keep_for_backward: bool
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


def _cross_channel_traced(x: Tensor, lo: int, hi: int, size: int, alpha: float, beta: float,
                          k: float) -> Tensor:
    """The same formula out of place, for ``torch.compile``: a sum of shifted slices of
    the padded squares, which inductor fuses (with its backward, which autograd derives)
    into a few loops, where the in-place slice-adds and the hand-written backward of the
    eager path would stay separate kernels (about 6x slower on AlexNet's norm1, CPU).
    Equal to the eager path up to summation order."""
    c_out = x.shape[1] - lo - hi
    pre = (size - 1) // 2
    pad_lo, pad_hi = max(0, pre - lo), max(0, size - 1 - pre - hi)
    squares = F.pad(x.square() * (alpha / size), (0, 0, pad_lo, pad_hi))
    start = lo - pre + pad_lo
    scale = squares.narrow(1, start, c_out) + k
    for j in range(1, size):
        scale = scale + squares.narrow(1, start + j, c_out)
    return x.narrow(1, lo, c_out) * _neg_pow(scale, beta)


class _CrossChannelLRN(torch.autograd.Function):
    """ACROSS_CHANNELS LRN with Caffe's closed-form backward (CrossChannelBackward).

    ``dx = dy * scale^-beta - (2 alpha beta / size) * x * window^T(dy * y / scale)``,
    which is the exact gradient; done by hand it takes half the time or less of
    autograd through the same forward ops (AlexNet norm1 shape, CPU).
    """

    # ``ctx`` is Any: torch's FunctionCtx declares neither ``saved_tensors`` nor the
    # attributes a Function keeps on it (``config``).

    @staticmethod
    def forward(ctx: Any, x: Tensor, lo: int, hi: int, size: int, alpha: float, beta: float,
                k: float) -> Tensor:
        y, p, q = _cross_channel_forward(x, lo, hi, size, alpha, beta, k, True)
        assert p is not None and q is not None  # kept for backward
        ctx.save_for_backward(x, p, q)
        ctx.config = (lo, hi, size, alpha, beta)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        (dy,) = grads  # the one output's gradient
        x, p, q = ctx.saved_tensors
        lo, hi, size, alpha, beta = ctx.config
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
    avg = pool2d(x.square(), local_size, 1, pad, "AVE")
    return x * _neg_pow(avg.mul(alpha).add_(1.0), beta)
