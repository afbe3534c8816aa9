"""netdsl.kernels.pooling against numpy transcriptions of Caffe's C++ pooling loops.

``caffe_pool_ref`` (in ``caffe_refs``) follows ``PoolingLayer::Forward_cpu`` for MAX and
AVE, with the argmax mask, and the CUDA ``StoPoolForwardTest`` for test-phase
STOCHASTIC; ``caffe_pool_backward_ref`` follows ``PoolingLayer::Backward_cpu``. On small
float64 arrays (named geometries and a random sweep, including Caffe's last-window clip,
empty windows and global pooling) ``pool2d``'s output and autograd gradient must agree
to float64 rounding, and it must reject the configurations Caffe rejects.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netdsl.caffe_math import FLT_MAX
from netdsl.kernels.pooling import StochasticPool, pool2d
from tests.kernels.caffe_refs import ATOL, RTOL, _t, caffe_pool_ref, caffe_pooled_size_ref

# --------------------------------------------------------------------------------------
# Reference transcriptions of Caffe
# --------------------------------------------------------------------------------------


def caffe_pool_backward_ref(x, top_diff, kernel, stride, pad, method, mask):
    """PoolingLayer::Backward_cpu (MAX via the mask, AVE spread by pool_size)."""
    n_, c_, height, width = x.shape
    (kh, kw), (sh, sw), (pad_h, pad_w) = kernel, stride, pad
    _, _, oh, ow = top_diff.shape
    bottom_diff = np.zeros_like(x)
    for n, c, ph, pw in itertools.product(range(n_), range(c_), range(oh), range(ow)):
        if method == "MAX":
            idx = mask[n, c, ph, pw]
            if idx >= 0:  # Caffe would write out of bounds for an empty window
                bottom_diff[n, c, idx // width, idx % width] += top_diff[n, c, ph, pw]
        else:
            hstart, wstart = ph * sh - pad_h, pw * sw - pad_w
            hend, wend = min(hstart + kh, height + pad_h), min(wstart + kw, width + pad_w)
            pool_size = (hend - hstart) * (wend - wstart)
            hstart, wstart = max(hstart, 0), max(wstart, 0)
            hend, wend = min(hend, height), min(wend, width)
            for h in range(hstart, hend):
                for w in range(wstart, wend):
                    bottom_diff[n, c, h, w] += top_diff[n, c, ph, pw] / pool_size
    return bottom_diff


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def _check_pool(x, kernel, stride, pad, method, round_mode="CEIL", global_pooling=False):
    ref, mask = caffe_pool_ref(x, kernel, stride, pad, method, round_mode, global_pooling)
    xt = _t(x, grad=True)
    out = pool2d(xt, kernel, stride, pad, method, round_mode, global_pooling)
    label = f"{method} k={kernel} s={stride} p={pad} {round_mode} in={x.shape[2:]}"
    assert out.shape == ref.shape, label
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=RTOL, atol=ATOL, err_msg=label)
    if method == "STOCHASTIC":
        return
    if global_pooling:
        kernel = x.shape[2:]
    top_diff = np.random.default_rng(1).normal(size=ref.shape)
    (grad,) = torch.autograd.grad(out, xt, _t(top_diff))
    grad_ref = caffe_pool_backward_ref(x, top_diff, kernel, stride, pad, method, mask)
    np.testing.assert_allclose(grad.numpy(), grad_ref, rtol=RTOL, atol=ATOL, err_msg=label)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize(
    "in_hw,kernel,stride,pad",
    [
        ((55, 55), (3, 3), (2, 2), (0, 0)),  # AlexNet 55 -> 27
        ((6, 6), (3, 3), (2, 2), (1, 1)),
        ((5, 5), (2, 2), (2, 2), (1, 1)),  # clip triggers
        ((7, 7), (3, 3), (2, 2), (2, 2)),  # pad > kernel // 2: torch refuses it
        ((7, 8), (1, 1), (3, 3), (0, 0)),  # kernel < stride, empty last column
        ((8, 8), (2, 1), (3, 3), (0, 0)),  # empty last row and column
        ((2, 2), (3, 3), (2, 2), (0, 0)),  # kernel larger than input
        ((7, 9), (3, 2), (2, 3), (1, 0)),  # non-square; W clipped because H has pad
        ((4, 4), (3, 3), (1, 1), (1, 1)),  # AVE divisor at borders (LRN-style)
    ],
)
def test_pool2d_named_cases(method, in_hw, kernel, stride, pad):
    x = np.random.default_rng(7).normal(size=(2, 2, *in_hw))
    _check_pool(x, kernel, stride, pad, method)


def test_pool2d_random_sweep_against_reference():
    rng = np.random.default_rng(123)
    pyrng = random.Random(5)
    for _ in range(150):
        kernel = (pyrng.randint(1, 4), pyrng.randint(1, 4))
        stride = (pyrng.randint(1, 4), pyrng.randint(1, 4))
        pad = (pyrng.randint(0, kernel[0] - 1), pyrng.randint(0, kernel[1] - 1))
        in_hw = (pyrng.randint(1, 8), pyrng.randint(1, 8))
        method = pyrng.choice(["MAX", "AVE"])
        mode = pyrng.choice(["CEIL", "FLOOR"])
        any_pad = any(pad)
        sizes = [
            caffe_pooled_size_ref(n, k, s, p, mode, any_pad)
            for n, k, s, p in zip(in_hw, kernel, stride, pad, strict=True)
        ]
        if min(sizes) < 1:
            with pytest.raises(ValueError, match="empty"):
                pool2d(torch.zeros(1, 1, *in_hw), kernel, stride, pad, method, mode)
            continue
        # Integer-valued inputs make ties (and Caffe's first-max rule) common.
        x = rng.integers(-3, 4, size=(1, 2, *in_hw)).astype(np.float64)
        _check_pool(x, kernel, stride, pad, method, mode)


def test_pool2d_uses_torch_when_identical():
    # The fast path is torch's own op for the usual geometries. (The torch_pool_matches
    # asserts of this test are in test_caffe_math.py.)
    x = torch.randn(2, 3, 55, 55)
    assert torch.equal(pool2d(x, 3, 2), F.max_pool2d(x, 3, 2, ceil_mode=True))


def test_pool2d_empty_window_is_minus_flt_max():
    x = torch.randn(1, 1, 8, 8)
    out = pool2d(x, 1, 3, 0, "MAX")
    assert out.shape == (1, 1, 4, 4)
    assert torch.all(out[..., 3, :] == -FLT_MAX) and torch.all(out[..., :, 3] == -FLT_MAX)
    ave = pool2d(x, 1, 3, 0, "AVE")
    assert torch.all(ave[..., 3, :] == 0)  # pool_size -1: -0.0
    # A window starting exactly at the border has pool_size 0: Caffe divides 0 by 0.
    edge = pool2d(torch.randn(1, 1, 6, 6), 1, 3, 0, "AVE")
    assert edge.shape == (1, 1, 3, 3)
    assert torch.all(edge[..., 2, :].isnan()) and not edge[..., :2, :2].isnan().any()


@pytest.mark.parametrize("method", ["MAX", "AVE", "STOCHASTIC"])
def test_pool2d_global(method):
    x = np.abs(np.random.default_rng(3).normal(size=(2, 3, 5, 4)))
    _check_pool(x, (1, 1), (1, 1), (0, 0), method, global_pooling=True)
    with pytest.raises(ValueError, match="global_pooling"):
        pool2d(_t(x), None, 2, 0, method, global_pooling=True)


@pytest.mark.parametrize(
    "in_hw,kernel,stride",
    [((6, 6), (3, 3), (2, 2)), ((7, 5), (2, 3), (2, 1)), ((8, 8), (1, 1), (3, 3))],
)
def test_pool2d_stochastic_test_phase(in_hw, kernel, stride):
    x = np.abs(np.random.default_rng(4).normal(size=(2, 2, *in_hw)))
    x[0, 0, :2, :2] = 0.0  # an all-zero window: 0 / FLT_MIN = 0
    _check_pool(x, kernel, stride, (0, 0), "STOCHASTIC")


def test_pool2d_rejects_what_caffe_rejects():
    x = torch.randn(1, 1, 6, 6)
    with pytest.raises(ValueError, match="padding"):
        pool2d(x, 3, 2, 1, "STOCHASTIC")
    with pytest.raises(ValueError, match="smaller than kernel"):
        pool2d(x, 3, 2, 3, "MAX")
    with pytest.raises(ValueError, match="method"):
        pool2d(x, 3, 2, 0, "MIN")
    with pytest.raises(ValueError, match="round_mode"):
        pool2d(x, 3, 2, 0, "MAX", round_mode="UP")


def test_pool2d_module():
    # Was a test of the CaffePool2d module (gone), which passed training=self.training:
    # in train mode AVE equals the default (test-phase) call, and STOCHASTIC is now the
    # StochasticPool module.
    x = torch.randn(1, 2, 7, 7)
    assert torch.equal(pool2d(x, 3, 2, 0, "AVE", training=True), pool2d(x, 3, 2, 0, "AVE"))
    s = StochasticPool(2, 2, 0, "CEIL", False)
    assert s.training
    sampled = s(x.abs())  # TRAIN: one value of each window (tests/layers/test_pooling.py)
    assert sampled.shape == (1, 2, 4, 4)
    s.eval()
    assert s(x.abs()).shape == (1, 2, 4, 4)
