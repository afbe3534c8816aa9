"""Caffe's pooling (``pooling_layer.cpp`` / ``.cu``): MAX, AVE and STOCHASTIC (both
phases), Caffe's output size with the last-window clip, and MAX's argmax mask."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..caffe_math import (
    FLT_MAX,
    FLT_MIN,
    empty_windows,
    pool_divisors,
    pool_padding,
    pooled_size,
    torch_pool_matches,
)

__all__ = ["StochasticPool", "pool2d", "pool2d_with_mask", "stochastic_train"]

_Pair = int | Sequence[int]


def _pair(v: _Pair, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    t = tuple(int(e) for e in v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return t


def _geometry(x: Tensor, kernel_hw: _Pair | None, stride_hw: _Pair, pad_hw: _Pair,
              method: str, round_mode: str, global_pooling: bool, training: bool
              ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int],
                         tuple[int, int]]:
    """``(in_hw, kernel, stride, pad, out_hw)``, checked as Caffe's LayerSetUp does."""
    if x.dim() not in (3, 4):
        raise ValueError(f"pooling needs (N, C, H, W) input, got {tuple(x.shape)}")
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
    ceil = round_mode.upper() == "CEIL"
    if not ceil and round_mode.upper() != "FLOOR":
        raise ValueError(f"unknown round_mode {round_mode!r}")
    clip = any(pad)
    out_hw = (pooled_size(in_hw[0], kernel[0], stride[0], pad[0], ceil, clip),
              pooled_size(in_hw[1], kernel[1], stride[1], pad[1], ceil, clip))
    if min(out_hw) < 1:
        raise ValueError(f"pooling output would be empty: {out_hw} from input {in_hw}")
    return in_hw, kernel, stride, pad, out_hw


def _pad_windows(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int], out_hw: tuple[int, int], value: float) -> Tensor:
    h0, h1 = pool_padding(x.shape[-2], kernel[0], stride[0], pad[0], out_hw[0])
    w0, w1 = pool_padding(x.shape[-1], kernel[1], stride[1], pad[1], out_hw[1])
    if h0 == h1 == w0 == w1 == 0:
        return x
    return F.pad(x, (w0, w1, h0, h1), value=value)


def _window_sums(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int], out_hw: tuple[int, int]) -> Tensor:
    """Sums of ``x`` over each Caffe window clipped to the image (zero outside)."""
    xp = _pad_windows(x, kernel, stride, pad, out_hw, 0.0)
    sums = F.avg_pool2d(xp, kernel, stride, 0, divisor_override=1)
    return sums[..., : out_hw[0], : out_hw[1]]


def pool2d(x: Tensor, kernel_hw: _Pair | None = None, stride_hw: _Pair = 1, pad_hw: _Pair = 0,
           method: str = "MAX", round_mode: str = "CEIL", global_pooling: bool = False,
           training: bool = False) -> Tensor:
    """Caffe's Pooling layer on ``(N, C, H, W)``.

    Output size as :func:`netdsl.caffe_math.pooled_size`. MAX takes the maximum over the
    window clipped to the image (padding never wins); the gradient goes to the first
    maximum in row-major order, as in Caffe's mask. AVE sums the clipped window and
    divides by Caffe's ``pool_size`` (:func:`netdsl.caffe_math.pool_divisors`).
    STOCHASTIC is, with ``training=False``, Caffe's ``StoPoolForwardTest``: ``sum(x^2) /
    (FLT_MIN + sum(x))`` over the clipped window; with ``training=True`` it samples one
    value per window (:func:`stochastic_train`). Caffe has no CPU and no padded version.

    Uses ``F.max_pool2d`` / ``F.avg_pool2d`` directly when their windows are Caffe's (the
    usual case), and otherwise pads explicitly and crops. A window lying entirely outside
    the image (pad 0, kernel < stride, CEIL) gets no gradient and yields what Caffe
    yields: ``-FLT_MAX`` for MAX, 0 for STOCHASTIC, and for AVE ``0 / pool_size`` with a
    ``pool_size`` of 0 or less: NaN at the image border, -0.0 beyond it.

    Known residual differences: with NaN inputs Caffe's MAX skips the NaN while torch
    propagates it; a window of only ``-inf`` gives ``-inf`` here and ``-FLT_MAX`` in Caffe.
    """
    method = method.upper()
    in_hw, kernel, stride, pad, out_hw = _geometry(
        x, kernel_hw, stride_hw, pad_hw, method, round_mode, global_pooling, training)
    if method == "STOCHASTIC" and training:
        return stochastic_train(x, kernel, stride, out_hw)
    if method == "STOCHASTIC":
        total = _window_sums(x, kernel, stride, pad, out_hw)
        squares = _window_sums(x.square(), kernel, stride, pad, out_hw)
        return squares / (total + FLT_MIN)
    ceil = round_mode.upper() == "CEIL"
    if torch_pool_matches(in_hw, kernel, stride, pad, ceil, out_hw):
        if method == "MAX":
            return F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil)
        return F.avg_pool2d(x, kernel, stride, pad, ceil_mode=ceil, count_include_pad=True)
    if method == "AVE":
        sums = _window_sums(x, kernel, stride, pad, out_hw)
        rows = pool_divisors(in_hw[0], kernel[0], stride[0], pad[0], out_hw[0])
        cols = pool_divisors(in_hw[1], kernel[1], stride[1], pad[1], out_hw[1])
        div = torch.tensor([[r * c for c in cols] for r in rows], dtype=x.dtype,
                           device=x.device)
        return sums / div
    xp = _pad_windows(x, kernel, stride, pad, out_hw, -math.inf)
    out = F.max_pool2d(xp, kernel, stride, 0)[..., : out_hw[0], : out_hw[1]]
    empty_rows = empty_windows(in_hw[0], stride[0], pad[0], out_hw[0])
    empty_cols = empty_windows(in_hw[1], stride[1], pad[1], out_hw[1])
    if any(empty_rows) or any(empty_cols):
        empty = torch.tensor([[r or c for c in empty_cols] for r in empty_rows], device=x.device)
        out = torch.where(empty, out.new_tensor(-FLT_MAX), out)
    return out


def stochastic_train(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                     out_hw: tuple[int, int]) -> Tensor:
    """Caffe's ``StoPoolForwardTrain`` (BVLC caffe ``src/caffe/layers/pooling_layer.cu``):
    each window (clipped to the image, no padding) draws ``u`` uniform in [0, 1) and
    outputs its first value, in row-major order, at which the running sum reaches ``u``
    times the window's sum: a value picked with probability proportional to itself, for
    the non-negative inputs (after a ReLU) the method is meant for. The gradient goes to
    the picked position alone (``StoPoolBackward``), through ``gather`` and ``unfold``.

    Draws from torch's global generator (``torch.manual_seed`` repeats a draw). A window
    of zeros picks its first value; a window wholly outside the image (pad 0, kernel <
    stride, CEIL) outputs 0 and gets no gradient, where Caffe leaves the output unset.
    Static shapes, no data-dependent Python branches: runs under ``torch.compile``.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    lead = tuple(int(d) for d in x.shape[:-2])
    xp = _pad_windows(x.reshape(-1, 1, h, w), kernel, stride, (0, 0), out_hw, 0.0)
    hp, wp = int(xp.shape[-2]), int(xp.shape[-1])
    rows, cols = (hp - kernel[0]) // stride[0] + 1, (wp - kernel[1]) // stride[1] + 1
    k = kernel[0] * kernel[1]
    windows = F.unfold(xp, kernel, stride=stride).reshape(-1, k, rows, cols)
    windows = windows[..., : out_hw[0], : out_hw[1]]
    running = windows.cumsum(1)
    total = running[:, -1:]
    threshold = torch.rand_like(total) * total
    first = (running >= threshold).to(torch.uint8).argmax(1, keepdim=True)
    picked = windows.gather(1, first).squeeze(1)
    return picked.reshape(*lead, out_hw[0], out_hw[1])


def pool2d_with_mask(x: Tensor, kernel_hw: _Pair | None = None, stride_hw: _Pair = 1,
                     pad_hw: _Pair = 0, round_mode: str = "CEIL",
                     global_pooling: bool = False) -> tuple[Tensor, Tensor]:
    """MAX pooling and Caffe's top mask: each window's argmax as ``h * W + w`` within its
    plane (-1 for an empty window).

    Caffe's mask top is a Dtype blob holding whole numbers; here it is float32 (float64
    for float64 input), whatever the input's dtype: a bfloat16 or float16 mask would round
    positions past 256 or 2048 (a 32x32 plane already has 1024), and SegNet's Upsample
    would put the values in the wrong places. float32 names every position of a plane up
    to 2^24 elements exactly."""
    y = pool2d(x, kernel_hw, stride_hw, pad_hw, "MAX", round_mode, global_pooling)
    in_hw, kernel, stride, pad, out_hw = _geometry(
        x, kernel_hw, stride_hw, pad_hw, "MAX", round_mode, global_pooling, False)
    h, w = in_hw
    xp = _pad_windows(x, kernel, stride, pad, out_hw, -math.inf)
    _, idx = F.max_pool2d(xp, kernel, stride, 0, return_indices=True)
    idx = idx[..., : out_hw[0], : out_hw[1]]
    wp = xp.shape[-1]
    row, col = idx // wp - pad[0], idx % wp - pad[1]
    inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    mask = torch.where(inside, row * w + col, torch.full_like(idx, -1))
    return y, mask.to(torch.promote_types(x.dtype, torch.float32))


class StochasticPool(nn.Module):
    """STOCHASTIC pooling, whose kernel depends on the phase: Caffe's test-phase formula
    in eval mode; in train mode one value sampled per window (:func:`stochastic_train`)."""

    def __init__(self, kernel_hw: _Pair | None, stride_hw: _Pair, pad_hw: _Pair,
                 round_mode: str, global_pooling: bool) -> None:
        super().__init__()
        self.kernel_hw, self.stride_hw, self.pad_hw = kernel_hw, stride_hw, pad_hw
        self.round_mode, self.global_pooling = round_mode, global_pooling

    def forward(self, x: Tensor) -> Tensor:
        return pool2d(x, self.kernel_hw, self.stride_hw, self.pad_hw, "STOCHASTIC",
                      self.round_mode, self.global_pooling, self.training)

    def extra_repr(self) -> str:
        return (f"kernel={self.kernel_hw}, stride={self.stride_hw}, pad={self.pad_hw}, "
                f"round_mode={self.round_mode}, global={self.global_pooling}")
