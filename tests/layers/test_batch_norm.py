from __future__ import annotations

import numpy as np
import torch

from netdsl.layers.base import FillerType

from .helpers import close, kind, lower, np_, params, params_from_text, rand, shape_error, shapes


def test_shape_params_and_defaults() -> None:
    assert shapes("BatchNorm", ((4, 3, 5, 5),)) == ((4, 3, 5, 5),)
    assert shapes("BatchNorm", ((4, 3),)) == ((4, 3),)
    k = kind("BatchNorm")
    assert k.blobs == ("mean", "variance", "scale_factor")
    assert k.param_shapes(params("BatchNorm"), ((4, 3, 5, 5),)) == {
        "mean": (3,), "variance": (3,), "scale_factor": (1,)}
    assert all(f.type is FillerType.constant and f.value == 0
               for f in k.fillers(params("BatchNorm")).values())
    p = params_from_text("BatchNorm", "batch_norm_param { use_global_stats: true }")
    assert p.use_global_stats is True and p.moving_average_fraction == 0.999 and p.eps == 1e-5
    assert params_from_text("BatchNorm", "").use_global_stats is None


def test_needs_a_channel_axis() -> None:
    shape_error("BatchNorm", ((4,),), match="channel axis")


def test_stats_are_buffers_not_parameters() -> None:
    m, _ = lower("BatchNorm", ((2, 3, 4, 4),))
    assert list(m.parameters()) == []
    bufs = dict(m.named_buffers())
    assert {k: tuple(v.shape) for k, v in bufs.items()} == {
        "mean": (3,), "variance": (3,), "scale_factor": (1,)}


def _set(m: torch.nn.Module, mean: np.ndarray, var: np.ndarray, sf: float) -> None:
    m.mean.copy_(torch.tensor(mean))
    m.variance.copy_(torch.tensor(var))
    m.scale_factor.fill_(sf)


def test_test_phase_uses_stored_stats_divided_by_scale_factor() -> None:
    x = rand(2, 3, 4, 4)
    m, _ = lower("BatchNorm", ((2, 3, 4, 4),), eps=1e-3)
    mean, var = np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 1.0])
    _set(m, mean * 4, var * 4, 4.0)
    m.eval()
    (y,) = m(x)
    ref = (np_(x) - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-3)
    close(y, ref)


def test_train_phase_batch_stats_and_caffe_running_sums() -> None:
    x = rand(2, 3, 4, 4) * 2 + 1
    m, _ = lower("BatchNorm", ((2, 3, 4, 4),))
    _set(m, np.zeros(3), np.zeros(3), 0.0)
    m.train()
    (y,) = m(x)
    xn = np_(x)
    mu = xn.mean(axis=(0, 2, 3))
    var = xn.var(axis=(0, 2, 3))
    close(y, (xn - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5), 1e-4)
    close(m.scale_factor, np.array([1.0]))
    close(m.mean, mu)
    close(m.variance, var * 32 / 31)  # unbiased: m = N * H * W = 32


def test_use_global_stats_overrides_the_phase() -> None:
    x = rand(2, 3)
    m, _ = lower("BatchNorm", ((2, 3),), use_global_stats=True)
    _set(m, np.zeros(3), np.ones(3), 1.0)
    m.train()
    close(m(x)[0], np_(x) / np.sqrt(1 + 1e-5))
    close(m.scale_factor, np.array([1.0]))  # not updated
