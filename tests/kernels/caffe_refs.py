"""Numpy transcriptions of Caffe's C++ loops shared by several kernel test files.

Each ``caffe_*_ref`` follows the corresponding Caffe CPU (or, for stochastic pooling,
CUDA test-phase) loop step by step on small float64 arrays; the kernels under test are
vectorised torch code, so agreement is checked to float64 rounding (``RTOL``/``ATOL``).
Transcriptions used by one family only live in that family's test file.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from netdsl.caffe_math import FLT_MAX, FLT_MIN

RTOL = 1e-10
ATOL = 1e-12


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def caffe_pooled_size_ref(in_size, kernel, stride, pad, round_mode, any_pad):
    """PoolingLayer::Reshape, with its float arithmetic."""
    rounder = math.ceil if round_mode == "CEIL" else math.floor
    out = int(rounder(float(in_size + 2 * pad - kernel) / stride)) + 1
    if any_pad and (out - 1) * stride >= in_size + pad:
        out -= 1
    return out


def caffe_pool_ref(x, kernel, stride, pad, method, round_mode="CEIL", global_pooling=False):
    """PoolingLayer::Forward_cpu (MAX, AVE) and StoPoolForwardTest (STOCHASTIC).

    Returns the output and, for MAX, the argmax mask (flat h * W + w, -1 if empty).
    """
    n_, c_, height, width = x.shape
    (kh, kw), (sh, sw), (pad_h, pad_w) = kernel, stride, pad
    if global_pooling:
        kh, kw = height, width
    any_pad = bool(pad_h or pad_w)
    oh = caffe_pooled_size_ref(height, kh, sh, pad_h, round_mode, any_pad)
    ow = caffe_pooled_size_ref(width, kw, sw, pad_w, round_mode, any_pad)
    top = np.zeros((n_, c_, oh, ow))
    mask = np.full((n_, c_, oh, ow), -1, dtype=np.int64)
    for ph, pw in itertools.product(range(oh), range(ow)):
        if method == "MAX":
            hstart, wstart = ph * sh - pad_h, pw * sw - pad_w
            hend, wend = min(hstart + kh, height), min(wstart + kw, width)
            hstart, wstart = max(hstart, 0), max(wstart, 0)
            top[:, :, ph, pw] = -FLT_MAX
            for h in range(hstart, hend):
                for w in range(wstart, wend):
                    better = x[:, :, h, w] > top[:, :, ph, pw]
                    top[:, :, ph, pw] = np.where(better, x[:, :, h, w], top[:, :, ph, pw])
                    mask[:, :, ph, pw] = np.where(better, h * width + w, mask[:, :, ph, pw])
        elif method == "AVE":
            hstart, wstart = ph * sh - pad_h, pw * sw - pad_w
            hend, wend = min(hstart + kh, height + pad_h), min(wstart + kw, width + pad_w)
            pool_size = (hend - hstart) * (wend - wstart)
            hstart, wstart = max(hstart, 0), max(wstart, 0)
            hend, wend = min(hend, height), min(wend, width)
            acc = np.zeros((n_, c_))
            for h in range(hstart, hend):
                for w in range(wstart, wend):
                    acc += x[:, :, h, w]
            with np.errstate(invalid="ignore"):  # empty window: 0 / 0 in Caffe too
                top[:, :, ph, pw] = acc / pool_size
        else:  # STOCHASTIC, test phase (pooling_layer.cu)
            hstart, wstart = ph * sh, pw * sw
            hend, wend = min(hstart + kh, height), min(wstart + kw, width)
            cumsum = np.full((n_, c_), FLT_MIN)
            cumvalues = np.zeros((n_, c_))
            for h in range(hstart, hend):
                for w in range(wstart, wend):
                    cumsum += x[:, :, h, w]
                    cumvalues += x[:, :, h, w] * x[:, :, h, w]
            top[:, :, ph, pw] = cumvalues / cumsum
    return top, mask
