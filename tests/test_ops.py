"""netdsl.ops against direct numpy transcriptions of Caffe's C++ loops.

Each ``caffe_*_ref`` below follows the corresponding Caffe CPU (or, for stochastic
pooling, CUDA test-phase) loop step by step on small float64 arrays; the ops under test
are vectorised torch code, so agreement is checked to float64 rounding.
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netdsl import ops
from netdsl.ops import (
    FLT_MAX,
    FLT_MIN,
    LRN,
    CaffeBatchNorm,
    CaffePool2d,
    accuracy,
    caffe_batch_norm,
    caffe_bn_global_stats,
    caffe_pool2d,
    caffe_pool_output_size,
    eltwise,
    loss_normalization,
    lrn,
    lrn_halo,
    lrn_shard,
    per_class_accuracy,
    softmax_with_loss,
)

RTOL = 1e-10
ATOL = 1e-12


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# --------------------------------------------------------------------------------------
# Reference transcriptions of Caffe
# --------------------------------------------------------------------------------------


def caffe_lrn_across_ref(x, size, alpha, beta, k):
    """LRNLayer::CrossChannelForward_cpu: running window over a zero-padded square."""
    n_, c_, h_, w_ = x.shape
    pre_pad = (size - 1) // 2
    scale = np.full_like(x, k)
    padded_square = np.zeros((c_ + size - 1, h_, w_))
    alpha_over_size = alpha / size
    for n in range(n_):
        padded_square[pre_pad : pre_pad + c_] = x[n] ** 2
        for c in range(size):
            scale[n, 0] += alpha_over_size * padded_square[c]
        for c in range(1, c_):
            scale[n, c] = scale[n, c - 1]
            scale[n, c] += alpha_over_size * padded_square[c + size - 1]
            scale[n, c] -= alpha_over_size * padded_square[c - 1]
    return x * scale ** (-beta), scale


def caffe_lrn_across_backward_ref(x, y, scale, dy, size, alpha, beta):
    """LRNLayer::CrossChannelBackward_cpu."""
    n_, c_, h_, w_ = x.shape
    padded_ratio = np.zeros((c_ + size - 1, h_, w_))
    cache_ratio = 2.0 * alpha * beta / size
    dx = scale ** (-beta) * dy
    inverse_pre_pad = size - (size + 1) // 2
    for n in range(n_):
        padded_ratio[inverse_pre_pad : inverse_pre_pad + c_] = dy[n] * y[n] / scale[n]
        accum = np.zeros((h_, w_))
        for c in range(size - 1):
            accum += padded_ratio[c]
        for c in range(c_):
            accum += padded_ratio[c + size - 1]
            dx[n, c] -= cache_ratio * x[n, c] * accum
            accum -= padded_ratio[c]
    return dx


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


def caffe_lrn_within_ref(x, size, alpha, beta):
    """LRNLayer::WithinChannelForward: split, power(2), AVE pool, power, product."""
    pre_pad = (size - 1) // 2
    square = x**2
    pooled, _ = caffe_pool_ref(square, (size, size), (1, 1), (pre_pad, pre_pad), "AVE")
    power = (1.0 + alpha * pooled) ** (-beta)  # PowerLayer: (shift + scale * x)^power
    return x * power


def _outer_inner(shape, axis):
    axis %= len(shape)
    return axis, int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1 :]))


def caffe_softmax_loss_ref(logits, labels, axis, ignore_label, mode, loss_weight):
    """SoftmaxWithLossLayer Forward_cpu / Backward_cpu with get_normalizer."""
    axis, outer, channels, inner = _outer_inner(logits.shape, axis)
    z = logits.reshape(outer, channels, inner)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    label = labels.reshape(-1)
    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            label_value = int(label[i * inner + j])
            if ignore_label is not None and label_value == ignore_label:
                continue
            loss -= math.log(max(prob[i, label_value, j], FLT_MIN))
            count += 1
    normalizer = {
        "FULL": outer * inner,
        "VALID": count,
        "BATCH_SIZE": outer,
        "NONE": 1,
    }[mode]
    normalizer = max(1.0, float(normalizer))
    diff = prob.copy()
    for i in range(outer):
        for j in range(inner):
            label_value = int(label[i * inner + j])
            if ignore_label is not None and label_value == ignore_label:
                diff[i, :, j] = 0
            else:
                diff[i, label_value, j] -= 1
    diff *= loss_weight / normalizer
    return loss / normalizer, diff.reshape(logits.shape)


def caffe_accuracy_ref(scores, labels, top_k, axis, ignore_label):
    """AccuracyLayer::Forward_cpu (master): both tops."""
    axis, outer, num_labels, inner = _outer_inner(scores.shape, axis)
    data = scores.reshape(outer, num_labels, inner)
    label = labels.reshape(-1)
    acc, count = 0, 0
    nums = np.zeros(num_labels)
    per_class = np.zeros(num_labels)
    for i in range(outer):
        for j in range(inner):
            label_value = int(label[i * inner + j])
            if ignore_label is not None and label_value == ignore_label:
                continue
            nums[label_value] += 1
            prob_of_true_class = data[i, label_value, j]
            num_better_predictions = -1
            k = 0
            while k < num_labels and num_better_predictions < top_k:
                num_better_predictions += data[i, k, j] >= prob_of_true_class
                k += 1
            if num_better_predictions < top_k:
                acc += 1
                per_class[label_value] += 1
            count += 1
    per_class = np.where(nums == 0, 0.0, per_class / np.maximum(nums, 1))
    return (0.0 if count == 0 else acc / count), per_class


def caffe_eltwise_ref(inputs, op, coeffs=None):
    """EltwiseLayer Forward_cpu; returns top and the MAX mask."""
    count = inputs[0].size
    flat = [a.reshape(-1) for a in inputs]
    top = np.zeros(count)
    mask = np.full(count, -1)
    if op == "SUM":
        coeffs = coeffs or [1.0] * len(inputs)
        for a, c in zip(flat, coeffs, strict=True):
            top += c * a
    elif op == "PROD":
        top = flat[0] * flat[1]
        for a in flat[2:]:
            top = top * a
    else:
        for idx in range(count):
            if flat[0][idx] > flat[1][idx]:
                top[idx], mask[idx] = flat[0][idx], 0
            else:
                top[idx], mask[idx] = flat[1][idx], 1
        for b in range(2, len(flat)):
            for idx in range(count):
                if flat[b][idx] > top[idx]:
                    top[idx], mask[idx] = flat[b][idx], b
    return top.reshape(inputs[0].shape), mask.reshape(inputs[0].shape)


def caffe_bn_ref(x, blobs, use_global_stats, maf, eps):
    """BatchNormLayer::Forward_cpu; returns top and the (possibly updated) blobs."""
    mean_blob, var_blob, sf_blob = (b.copy() for b in blobs)
    num, channels = x.shape[0], x.shape[1]
    spatial = x.size // (num * channels)
    x3 = x.reshape(num, channels, spatial)
    if use_global_stats:
        scale_factor = 0.0 if sf_blob[0] == 0 else 1.0 / sf_blob[0]
        mean = scale_factor * mean_blob
        variance = scale_factor * var_blob
    else:
        mean = x3.sum(axis=(0, 2)) / (num * spatial)
    top = x3 - mean[None, :, None]
    if not use_global_stats:
        variance = (top**2).sum(axis=(0, 2)) / (num * spatial)
        sf_blob[0] = sf_blob[0] * maf + 1
        mean_blob = mean + maf * mean_blob
        m = x.size // channels
        bias_correction_factor = m / (m - 1) if m > 1 else 1
        var_blob = bias_correction_factor * variance + maf * var_blob
    top = top / np.sqrt(variance + eps)[None, :, None]
    return top.reshape(x.shape), (mean_blob, var_blob, sf_blob)


# --------------------------------------------------------------------------------------
# LRN
# --------------------------------------------------------------------------------------

LRN_PARAMS = [
    (1e-4, 0.75, 1.0),
    (0.5, 0.75, 2.0),
    (1.0, 0.5, 1.0),
    (0.3, 1.0, 1.5),
    (2.0, 0.3, 0.7),
]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 13, 15])
@pytest.mark.parametrize("alpha,beta,k", LRN_PARAMS)
def test_lrn_across_matches_caffe_forward_and_backward(size, alpha, beta, k):
    rng = np.random.default_rng(size * 31 + int(beta * 100))
    x = rng.normal(size=(2, 9, 3, 4)) * 1.5
    dy = rng.normal(size=x.shape)
    y_ref, scale = caffe_lrn_across_ref(x, size, alpha, beta, k)
    dx_ref = caffe_lrn_across_backward_ref(x, y_ref, scale, dy, size, alpha, beta)
    xt = _t(x, grad=True)
    y = lrn(xt, size, alpha, beta, k)
    np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=RTOL, atol=ATOL)
    (dx,) = torch.autograd.grad(y, xt, _t(dy))
    np.testing.assert_allclose(dx.numpy(), dx_ref, rtol=1e-9, atol=1e-11)


def test_lrn_even_size_window_is_asymmetric_like_caffe():
    # local_size 2: pre_pad 0, so channel c sees {c, c+1}; the top channel sees itself.
    x = torch.zeros(1, 4, 1, 1, dtype=torch.float64)
    x[0, 2] = 1.0
    y = lrn(x + 1.0, 2, alpha=2.0, beta=1.0, k=0.0)
    scale = ((x + 1.0) / y)[0, :, 0, 0]  # k + alpha/2 * window sum of squares
    np.testing.assert_allclose(scale.numpy(), [2.0, 5.0, 5.0, 1.0])
    assert lrn_halo(2) == (0, 1)
    assert lrn_halo(4) == (1, 2)
    assert lrn_halo(5) == (2, 2)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn_odd_sizes_match_torch_local_response_norm(size):
    x = torch.randn(2, 7, 4, 4, dtype=torch.float64)
    ours = lrn(x, size, 0.7, 0.75, 1.3)
    theirs = F.local_response_norm(x, size, alpha=0.7, beta=0.75, k=1.3)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_lrn_even_sizes_differ_from_torch_local_response_norm():
    # Torch pads size // 2 channels below, Caffe (size - 1) // 2.
    x = torch.randn(1, 6, 2, 2, dtype=torch.float64)
    assert not torch.allclose(lrn(x, 4, 1.0, 0.75, 1.0), F.local_response_norm(x, 4, 1.0))


@pytest.mark.parametrize(
    "size,beta", [(1, 0.75), (2, 0.5), (3, 1.0), (4, 0.3), (5, 0.75), (14, 0.75)]
)
def test_lrn_across_gradcheck(size, beta):
    x = torch.randn(2, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: lrn(t, size, 0.9, beta, 1.1), (x,))


def test_lrn_across_works_on_2d_and_3d_inputs():
    x = np.random.default_rng(0).normal(size=(3, 8))
    ref, _ = caffe_lrn_across_ref(x[:, :, None, None], 5, 0.5, 0.75, 1.0)
    np.testing.assert_allclose(lrn(_t(x), 5, 0.5, 0.75, 1.0).numpy(), ref[:, :, 0, 0])
    x3 = np.random.default_rng(1).normal(size=(2, 8, 5))
    ref3, _ = caffe_lrn_across_ref(x3[..., None], 3, 0.5, 0.75, 1.0)
    np.testing.assert_allclose(lrn(_t(x3), 3, 0.5, 0.75, 1.0).numpy(), ref3[..., 0])


def test_lrn_without_grad_takes_plain_path_and_agrees():
    x = torch.randn(2, 10, 3, 3)
    with torch.no_grad():
        plain = lrn(x, 5, 1e-2, 0.75, 1.0)
    xg = x.clone().requires_grad_()
    viafn = lrn(xg, 5, 1e-2, 0.75, 1.0)
    assert plain.grad_fn is None and viafn.grad_fn is not None
    assert torch.equal(plain, viafn.detach())


@pytest.mark.parametrize("size", [1, 3, 5, 7])
@pytest.mark.parametrize("alpha,beta", [(1e-4, 0.75), (0.5, 0.5), (1.3, 0.6)])
def test_lrn_within_channel_matches_caffe(size, alpha, beta):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(2, 3, 6, 5)) * 2.0
    ref = caffe_lrn_within_ref(x, size, alpha, beta)
    y = lrn(_t(x), size, alpha, beta, k=123.0, region="WITHIN_CHANNEL")  # k unused
    np.testing.assert_allclose(y.numpy(), ref, rtol=RTOL, atol=ATOL)
    xt = _t(x[:1, :2, :4, :4], grad=True)
    assert torch.autograd.gradcheck(
        lambda t: lrn(t, size, alpha, beta, region="WITHIN_CHANNEL"), (xt,)
    )


def test_lrn_rejects_bad_configuration():
    x = torch.randn(1, 4, 3, 3)
    with pytest.raises(ValueError, match="odd"):
        lrn(x, 4, region="WITHIN_CHANNEL")
    with pytest.raises(ValueError, match="norm_region"):
        lrn(x, 3, region="SIDEWAYS")
    with pytest.raises(ValueError, match="local_size"):
        lrn(x, 0)
    with pytest.raises(ValueError, match="halo"):
        lrn_shard(x, 2, 2, 3)


def _shards(channels: int, cuts: list[int], size: int):
    below, above = lrn_halo(size)
    bounds = [0, *cuts, channels]
    for start, stop in itertools.pairwise(bounds):
        lo = min(below, start)
        hi = min(above, channels - stop)
        yield start, stop, lo, hi


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 9, 13, 15])
@pytest.mark.parametrize("beta", [0.75, 0.5, 0.6])
def test_lrn_shard_matches_single_device(size, beta):
    channels = 20
    x = torch.randn(3, channels, 5, 4)
    full = lrn(x, size, 1e-2, beta, 1.0)
    pieces = []
    for start, stop, lo, hi in _shards(channels, [1, 7, 13], size):
        halo = x[:, start - lo : stop + hi]
        pieces.append(lrn_shard(halo, lo, hi, size, 1e-2, beta, 1.0))
    sharded = torch.cat(pieces, dim=1)
    if size <= ops._MATMUL_MIN_SIZE and beta in (0.75, 0.5):
        assert torch.equal(sharded, full)  # same arithmetic, same order
    else:  # matmul blocking / vectorised pow may round differently
        torch.testing.assert_close(sharded, full, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("size", [2, 5])
def test_lrn_shard_gradients_sum_to_single_device_gradient(size):
    channels = 11
    x = torch.randn(2, channels, 3, 3, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, channels, 3, 3, dtype=torch.float64)
    (g_full,) = torch.autograd.grad(lrn(x, size, 0.4, 0.75, 1.0), x, dy)
    outs = []
    for start, stop, lo, hi in _shards(channels, [4, 8], size):
        outs.append(lrn_shard(x[:, start - lo : stop + hi], lo, hi, size, 0.4, 0.75, 1.0))
    (g_shard,) = torch.autograd.grad(torch.cat(outs, 1), x, dy)
    torch.testing.assert_close(g_shard, g_full, rtol=1e-12, atol=1e-12)


def test_lrn_shard_extra_halo_is_ignored_and_within_channel_slices():
    x = torch.randn(1, 12, 3, 3, dtype=torch.float64)
    full = lrn(x, 3, 0.5, 0.75, 1.0)
    torch.testing.assert_close(lrn_shard(x[:, 1:10], 3, 3, 3, 0.5, 0.75, 1.0), full[:, 4:7])
    within = lrn(x, 3, 0.5, 0.75, region="WITHIN_CHANNEL")
    torch.testing.assert_close(
        lrn_shard(x[:, 2:9], 1, 2, 3, 0.5, 0.75, region="WITHIN_CHANNEL"), within[:, 3:7]
    )


def test_lrn_module():
    m = LRN(5, 1e-4, 0.75, 1.0)
    x = torch.randn(1, 8, 3, 3)
    assert torch.equal(m(x), lrn(x, 5, 1e-4, 0.75, 1.0))
    assert "local_size=5" in repr(m)


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "in_size,kernel,stride,pad,mode,expected",
    [
        (55, 3, 2, 0, "CEIL", 27),  # AlexNet pool1
        (27, 3, 2, 0, "CEIL", 13),  # AlexNet pool2
        (13, 3, 2, 0, "CEIL", 6),  # AlexNet pool5
        (112, 3, 2, 0, "CEIL", 56),  # GoogLeNet pool1 (ceil gives one more than floor)
        (112, 3, 2, 0, "FLOOR", 55),
        (6, 3, 2, 1, "CEIL", 4),  # pad, clip does not trigger: 3 * 2 < 6 + 1
        (5, 2, 2, 1, "CEIL", 3),  # ceil gives 4, last window would start in the padding
        (7, 3, 2, 2, "CEIL", 5),  # pad > kernel // 2; clip triggers (ceil gives 6)
        (7, 1, 3, 0, "CEIL", 3),  # kernel < stride, windows skip pixels
        (8, 1, 3, 0, "CEIL", 4),  # ... and the last one starts past the input
        (8, 1, 3, 0, "FLOOR", 3),
        (2, 3, 2, 0, "CEIL", 1),  # kernel larger than the input: ceil(-0.5) = 0
        (2, 3, 2, 0, "FLOOR", 0),
        (2, 3, 1, 0, "CEIL", 0),  # ceil(-1.0) = -1
    ],
)
def test_caffe_pool_output_size(in_size, kernel, stride, pad, mode, expected):
    assert caffe_pool_output_size(in_size, kernel, stride, pad, mode) == expected
    ref = caffe_pooled_size_ref(in_size, kernel, stride, pad, mode, pad > 0)
    assert ref == expected


def test_caffe_pool_output_size_clip_follows_either_pad():
    # Caffe clips both axes when any pad is set: W axis has pad 0 here.
    assert caffe_pool_output_size(8, 1, 3, 0, "CEIL") == 4
    assert caffe_pool_output_size(8, 1, 3, 0, "CEIL", clip=True) == 3


def _check_pool(x, kernel, stride, pad, method, round_mode="CEIL", global_pooling=False):
    ref, mask = caffe_pool_ref(x, kernel, stride, pad, method, round_mode, global_pooling)
    xt = _t(x, grad=True)
    out = caffe_pool2d(xt, kernel, stride, pad, method, round_mode, global_pooling)
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
def test_caffe_pool2d_named_cases(method, in_hw, kernel, stride, pad):
    x = np.random.default_rng(7).normal(size=(2, 2, *in_hw))
    _check_pool(x, kernel, stride, pad, method)


def test_caffe_pool2d_random_sweep_against_reference():
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
                caffe_pool2d(torch.zeros(1, 1, *in_hw), kernel, stride, pad, method, mode)
            continue
        # Integer-valued inputs make ties (and Caffe's first-max rule) common.
        x = rng.integers(-3, 4, size=(1, 2, *in_hw)).astype(np.float64)
        _check_pool(x, kernel, stride, pad, method, mode)


def test_caffe_pool2d_uses_torch_when_identical():
    # The fast path is torch's own op for the usual geometries.
    args = ((55, 55), (3, 3), (2, 2), (0, 0), True, (27, 27))
    assert ops._torch_pool_matches(*args)
    assert ops._torch_pool_matches((6, 6), (3, 3), (2, 2), (1, 1), True, (4, 4))
    assert not ops._torch_pool_matches((8, 8), (1, 1), (3, 3), (0, 0), True, (4, 4))
    assert not ops._torch_pool_matches((7, 7), (3, 3), (2, 2), (2, 2), True, (5, 5))
    x = torch.randn(2, 3, 55, 55)
    assert torch.equal(caffe_pool2d(x, 3, 2), F.max_pool2d(x, 3, 2, ceil_mode=True))


def test_caffe_pool2d_empty_window_is_minus_flt_max():
    x = torch.randn(1, 1, 8, 8)
    out = caffe_pool2d(x, 1, 3, 0, "MAX")
    assert out.shape == (1, 1, 4, 4)
    assert torch.all(out[..., 3, :] == -FLT_MAX) and torch.all(out[..., :, 3] == -FLT_MAX)
    ave = caffe_pool2d(x, 1, 3, 0, "AVE")
    assert torch.all(ave[..., 3, :] == 0)  # pool_size -1: -0.0
    # A window starting exactly at the border has pool_size 0: Caffe divides 0 by 0.
    edge = caffe_pool2d(torch.randn(1, 1, 6, 6), 1, 3, 0, "AVE")
    assert edge.shape == (1, 1, 3, 3)
    assert torch.all(edge[..., 2, :].isnan()) and not edge[..., :2, :2].isnan().any()


@pytest.mark.parametrize("method", ["MAX", "AVE", "STOCHASTIC"])
def test_caffe_pool2d_global(method):
    x = np.abs(np.random.default_rng(3).normal(size=(2, 3, 5, 4)))
    _check_pool(x, (1, 1), (1, 1), (0, 0), method, global_pooling=True)
    with pytest.raises(ValueError, match="global_pooling"):
        caffe_pool2d(_t(x), None, 2, 0, method, global_pooling=True)


@pytest.mark.parametrize(
    "in_hw,kernel,stride",
    [((6, 6), (3, 3), (2, 2)), ((7, 5), (2, 3), (2, 1)), ((8, 8), (1, 1), (3, 3))],
)
def test_caffe_pool2d_stochastic_test_phase(in_hw, kernel, stride):
    x = np.abs(np.random.default_rng(4).normal(size=(2, 2, *in_hw)))
    x[0, 0, :2, :2] = 0.0  # an all-zero window: 0 / FLT_MIN = 0
    _check_pool(x, kernel, stride, (0, 0), "STOCHASTIC")


def test_caffe_pool2d_rejects_what_caffe_rejects():
    x = torch.randn(1, 1, 6, 6)
    with pytest.raises(ValueError, match="training"):
        caffe_pool2d(x, 2, 2, 0, "STOCHASTIC", training=True)
    with pytest.raises(ValueError, match="padding"):
        caffe_pool2d(x, 3, 2, 1, "STOCHASTIC")
    with pytest.raises(ValueError, match="smaller than kernel"):
        caffe_pool2d(x, 3, 2, 3, "MAX")
    with pytest.raises(ValueError, match="method"):
        caffe_pool2d(x, 3, 2, 0, "MIN")
    with pytest.raises(ValueError, match="round_mode"):
        caffe_pool2d(x, 3, 2, 0, "MAX", round_mode="UP")


def test_caffe_pool2d_module():
    m = CaffePool2d(3, 2, 0, "AVE")
    x = torch.randn(1, 2, 7, 7)
    assert torch.equal(m(x), caffe_pool2d(x, 3, 2, 0, "AVE"))
    s = CaffePool2d(2, 2, 0, "STOCHASTIC")
    with pytest.raises(ValueError):
        s(x.abs())
    s.eval()
    assert s(x.abs()).shape == (1, 2, 4, 4)


# --------------------------------------------------------------------------------------
# SoftmaxWithLoss and Accuracy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("shape,axis", [((5, 4), 1), ((2, 3, 4, 2), 1), ((2, 3, 4), -1)])
@pytest.mark.parametrize("ignore_label", [None, 1])
def test_softmax_with_loss_matches_caffe(mode, shape, axis, ignore_label):
    rng = np.random.default_rng(len(shape) * 10 + (ignore_label or 0))
    logits = rng.normal(size=shape) * 3
    a, _, channels, _ = _outer_inner(shape, axis)
    label_shape = shape[:a] + shape[a + 1 :]
    labels = rng.integers(0, channels, size=label_shape).astype(np.float64)
    loss_ref, diff_ref = caffe_softmax_loss_ref(logits, labels, axis, ignore_label, mode, 0.7)
    lt = _t(logits, grad=True)
    loss = softmax_with_loss(lt, torch.tensor(labels), axis, ignore_label, mode, loss_weight=0.7)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), 0.7 * loss_ref, rtol=1e-12)
    (grad,) = torch.autograd.grad(loss, lt)
    np.testing.assert_allclose(grad.numpy(), diff_ref, rtol=1e-10, atol=1e-14)


def test_softmax_with_loss_flt_min_clamp_and_caffe_gradient():
    logits = _t(np.array([[0.0, 200.0], [1.0, 0.0]]), grad=True)
    labels = torch.tensor([0, 0])
    loss = softmax_with_loss(logits, labels, normalization="NONE")
    loss_ref, diff_ref = caffe_softmax_loss_ref(
        logits.detach().numpy(), labels.numpy(), 1, None, "NONE", 1.0
    )
    assert loss.item() == pytest.approx(loss_ref, rel=1e-12)
    assert loss.item() < 87.34 + 1.0  # -log(FLT_MIN) + the second item's loss
    (grad,) = torch.autograd.grad(loss, logits)
    np.testing.assert_allclose(grad.numpy(), diff_ref, atol=1e-14)


def test_softmax_with_loss_all_ignored_and_legacy_normalize():
    logits = torch.randn(3, 4, dtype=torch.float64)
    labels = torch.full((3,), -1)
    assert softmax_with_loss(logits, labels, ignore_label=-1).item() == 0.0
    assert loss_normalization() == "VALID"
    assert loss_normalization(None, normalize=False) == "BATCH_SIZE"
    assert loss_normalization(None, normalize=True) == "VALID"
    assert loss_normalization("full", normalize=False) == "FULL"
    labels = torch.tensor([0, 1, 2])
    by_legacy = softmax_with_loss(logits, labels, normalization=None, normalize=False)
    by_mode = softmax_with_loss(logits, labels, normalization="BATCH_SIZE")
    assert torch.equal(by_legacy, by_mode)
    with pytest.raises(ValueError, match="normalization"):
        loss_normalization("MEAN")
    with pytest.raises(ValueError, match="number of labels"):
        softmax_with_loss(logits, torch.zeros(4))


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("shape,axis", [((30, 5), 1), ((3, 4, 2, 3), 1), ((4, 3, 5), 2)])
@pytest.mark.parametrize("ignore_label", [None, 0])
def test_accuracy_matches_caffe_including_ties(top_k, shape, axis, ignore_label):
    rng = np.random.default_rng(top_k * 7 + len(shape))
    scores = rng.integers(0, 3, size=shape).astype(np.float64)  # many ties
    a, _, channels, _ = _outer_inner(shape, axis)
    labels = rng.integers(0, channels, size=shape[:a] + shape[a + 1 :])
    acc_ref, per_class_ref = caffe_accuracy_ref(scores, labels, top_k, axis, ignore_label)
    acc = accuracy(torch.tensor(scores), torch.tensor(labels), top_k, axis, ignore_label)
    assert acc.item() == pytest.approx(acc_ref, abs=1e-15)
    per_class = per_class_accuracy(
        torch.tensor(scores), torch.tensor(labels), top_k, axis, ignore_label
    )
    np.testing.assert_allclose(per_class.numpy(), per_class_ref)


def test_accuracy_tie_counts_against_the_hit():
    scores = torch.tensor([[1.0, 1.0, 0.0]])
    assert accuracy(scores, torch.tensor([0])).item() == 0.0
    assert accuracy(scores, torch.tensor([1])).item() == 0.0
    assert accuracy(scores, torch.tensor([1]), top_k=2).item() == 1.0
    assert accuracy(scores, torch.tensor([0]), ignore_label=0).item() == 0.0  # no items
    with pytest.raises(ValueError, match="top_k"):
        accuracy(scores, torch.tensor([0]), top_k=4)


# --------------------------------------------------------------------------------------
# Eltwise
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_inputs", [2, 3, 4])
@pytest.mark.parametrize("op", ["SUM", "PROD", "MAX"])
def test_eltwise_matches_caffe(n_inputs, op):
    rng = np.random.default_rng(n_inputs)
    inputs = [rng.integers(-2, 3, size=(2, 3, 4)).astype(np.float64) for _ in range(n_inputs)]
    coeffs = [0.5, -1.0, 2.0, 3.0][:n_inputs] if op == "SUM" else None
    ref, mask = caffe_eltwise_ref(inputs, op, coeffs)
    ts = [_t(a, grad=True) for a in inputs]
    out = eltwise(ts, op, coeffs)
    np.testing.assert_allclose(out.detach().numpy(), ref)
    dy = rng.normal(size=ref.shape)
    grads = torch.autograd.grad(out, ts, _t(dy))
    for i, g in enumerate(grads):
        if op == "SUM":
            expected = coeffs[i] * dy
        elif op == "PROD":
            expected = dy * np.prod([a for j, a in enumerate(inputs) if j != i], axis=0)
        else:
            expected = dy * (mask == i)
        np.testing.assert_allclose(g.numpy(), expected, err_msg=f"input {i}")


def test_eltwise_max_tie_rule_and_errors():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([1.0, 1.0], requires_grad=True)
    c = torch.tensor([1.0, 2.0], requires_grad=True)
    out = eltwise([a, b, c], "MAX")
    ga, gb, gc = torch.autograd.grad(out.sum(), [a, b, c])
    # tie 0/1 goes to input 1; a later tie (c) does not take over
    assert ga.tolist() == [0.0, 1.0] and gb.tolist() == [1.0, 0.0] and gc.tolist() == [0, 0]
    plain = eltwise([a.detach(), b.detach()])
    assert torch.equal(plain, a.detach() + b.detach())
    with pytest.raises(ValueError, match="at least two"):
        eltwise([a])
    with pytest.raises(ValueError, match="only for SUM"):
        eltwise([a, b], "MAX", [1.0, 2.0])
    with pytest.raises(ValueError, match="one coefficient"):
        eltwise([a, b], "SUM", [1.0])
    with pytest.raises(ValueError, match="equal shapes"):
        eltwise([a, torch.ones(3)])
    with pytest.raises(ValueError, match="operation"):
        eltwise([a, b], "MIN")


# --------------------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5), (1, 3, 1, 1)])
def test_batch_norm_training_steps_match_caffe(shape):
    rng = np.random.default_rng(sum(shape))
    channels = shape[1]
    blobs = (np.zeros(channels), np.zeros(channels), np.zeros(1))
    tblobs = tuple(_t(b) for b in blobs)
    for _ in range(3):
        x = rng.normal(size=shape) * 2 + 1
        ref, blobs = caffe_bn_ref(x, blobs, False, 0.9, 1e-5)
        y, stats = caffe_batch_norm(
            _t(x), *tblobs, use_global_stats=False, moving_average_fraction=0.9
        )
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)
        assert stats is not None
        for got, want in zip(stats, blobs, strict=True):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
        tblobs = tuple(stats)
    ref, _ = caffe_bn_ref(x, blobs, True, 0.9, 1e-5)
    y, stats = caffe_batch_norm(_t(x), *tblobs, use_global_stats=True)
    assert stats is None
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_batch_norm_global_stats_with_zero_scale_factor_and_gradcheck():
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    y, _ = caffe_batch_norm(x, zeros + 5, zeros + 7, torch.zeros(1), True, eps=1e-3)
    torch.testing.assert_close(y, x / math.sqrt(1e-3))  # Caffe: stats * 0
    xg = x.clone().requires_grad_()
    for use_global in (False, True):
        assert torch.autograd.gradcheck(
            lambda t, g=use_global: caffe_batch_norm(
                t, zeros + 0.2, zeros + 3, torch.ones(1, dtype=torch.float64), g
            )[0],
            (xg,),
        )


def test_batch_norm_module_first_step_equals_batch_stats():
    m = CaffeBatchNorm(3, moving_average_fraction=0.999).double()
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    m.train()
    m(x)
    mean, var = caffe_bn_global_stats(m.mean, m.variance, m.scale_factor)
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, x.var(dim=(0, 2, 3), unbiased=True))
    m.eval()
    y = m(x)
    expected = (x - mean[:, None, None]) / (var[:, None, None] + 1e-5).sqrt()
    torch.testing.assert_close(y, expected)
    assert m.scale_factor.item() == 1.0
    assert set(dict(m.named_buffers())) == {"mean", "variance", "scale_factor"}
