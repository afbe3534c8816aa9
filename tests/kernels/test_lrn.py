"""netdsl.kernels.lrn against numpy transcriptions of Caffe's C++ LRN loops.

``caffe_lrn_across_ref`` and ``caffe_lrn_across_backward_ref`` follow
``LRNLayer::CrossChannelForward_cpu`` / ``CrossChannelBackward_cpu`` step by step, and
``caffe_lrn_within_ref`` composes WITHIN_CHANNEL from Caffe's split, power and AVE
pooling layers (the pooling transcription is in ``caffe_refs``); on small float64 arrays
the vectorised kernels must agree to float64 rounding. Also checked: agreement with
``F.local_response_norm`` for odd sizes, gradients, and that channel shards
(``lrn_shard``) reproduce the single-device LRN.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netdsl.caffe_math import lrn_window
from netdsl.kernels.lrn import _MATMUL_MIN_SIZE, lrn, lrn_shard
from tests.kernels.caffe_refs import ATOL, RTOL, _t, caffe_pool_ref

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


def caffe_lrn_within_ref(x, size, alpha, beta):
    """LRNLayer::WithinChannelForward: split, power(2), AVE pool, power, product."""
    pre_pad = (size - 1) // 2
    square = x**2
    pooled, _ = caffe_pool_ref(square, (size, size), (1, 1), (pre_pad, pre_pad), "AVE")
    power = (1.0 + alpha * pooled) ** (-beta)  # PowerLayer: (shift + scale * x)^power
    return x * power


# --------------------------------------------------------------------------------------
# Tests
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
    # The lrn_window asserts of this test are in test_caffe_math.py.


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
    below, above = lrn_window(size)
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
    if size <= _MATMUL_MIN_SIZE and beta in (0.75, 0.5):
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
    # Was a test of the LRN module (gone): the function takes the module's arguments,
    # by position in the layer's order or by name, region defaulting to ACROSS_CHANNELS.
    x = torch.randn(1, 8, 3, 3)
    by_name = lrn(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0, region="ACROSS_CHANNELS")
    assert torch.equal(by_name, lrn(x, 5, 1e-4, 0.75, 1.0))
