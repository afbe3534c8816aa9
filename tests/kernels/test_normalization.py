"""netdsl.kernels.normalization's BatchNorm against a numpy transcription of Caffe's C++.

``caffe_bn_ref`` follows ``BatchNormLayer::Forward_cpu``: batch statistics and the
running-sum blob updates (moving average fraction, bias-corrected variance, scale
factor) in training, the blobs divided by the scale factor with ``use_global_stats``.
``batch_norm``'s output and updated blobs must agree with it to float64 rounding over
several training steps; the ``BatchNorm`` module must keep Caffe's three buffers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netdsl.kernels.normalization import BatchNorm, batch_norm, bn_global_stats
from tests.kernels.caffe_refs import _t

# --------------------------------------------------------------------------------------
# Reference transcriptions of Caffe
# --------------------------------------------------------------------------------------


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
# Tests
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
        y, stats = batch_norm(_t(x), *tblobs, use_global_stats=False, moving_average_fraction=0.9)
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)
        assert stats is not None
        for got, want in zip(stats, blobs, strict=True):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
        tblobs = tuple(stats)
    ref, _ = caffe_bn_ref(x, blobs, True, 0.9, 1e-5)
    y, stats = batch_norm(_t(x), *tblobs, use_global_stats=True)
    assert stats is None
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-12)


def test_batch_norm_global_stats_with_zero_scale_factor_and_gradcheck():
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    y, _ = batch_norm(x, zeros + 5, zeros + 7, torch.zeros(1), True, eps=1e-3)
    torch.testing.assert_close(y, x / math.sqrt(1e-3))  # Caffe: stats * 0
    xg = x.clone().requires_grad_()
    for use_global in (False, True):
        assert torch.autograd.gradcheck(
            lambda t, g=use_global: batch_norm(
                t, zeros + 0.2, zeros + 3, torch.ones(1, dtype=torch.float64), g
            )[0],
            (xg,),
        )


def test_batch_norm_module_first_step_equals_batch_stats():
    m = BatchNorm(3, moving_average_fraction=0.999).double()
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    m.train()
    m(x)
    mean, var = bn_global_stats(m.mean, m.variance, m.scale_factor)
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, x.var(dim=(0, 2, 3), unbiased=True))
    m.eval()
    y = m(x)
    expected = (x - mean[:, None, None]) / (var[:, None, None] + 1e-5).sqrt()
    torch.testing.assert_close(y, expected)
    assert m.scale_factor.item() == 1.0
    assert set(dict(m.named_buffers())) == {"mean", "variance", "scale_factor"}
