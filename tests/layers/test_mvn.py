"""MVN (BVLC caffe mvn_layer.cpp): shapes, and the kernel against a numpy transcription of
Forward_cpu and Backward_cpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import REGISTRY
from netdsl.layers.base import Follow

from .helpers import close, kind, lower, np_, params, params_from_text, shape_error, shapes
from .roundtrip import round_trip


def caffe_mvn(x: np.ndarray, dy: np.ndarray, normalize_variance: bool, across: bool,
              eps: float) -> tuple[np.ndarray, np.ndarray]:
    """MVNLayer::Forward_cpu and Backward_cpu, step for step (gemv/gemm as row sums and
    broadcasts): ``(top, bottom_diff)``."""
    x4 = x.reshape(*x.shape, *([1] * (4 - x.ndim)))
    num = x4.shape[0] if across else x4.shape[0] * x4.shape[1]
    dim = x4.size // num
    bottom, top_diff = x4.reshape(num, dim), dy.reshape(num, dim)
    ones = np.ones(dim)
    mean = bottom @ ones * (1.0 / dim)  # EX
    top = bottom + np.outer(-mean, ones)  # X - EX
    variance = None
    if normalize_variance:
        temp = top ** 2
        variance = temp @ ones * (1.0 / dim)  # E((X-EX)^2)
        variance = variance ** 0.5
        variance = variance + eps
        top = top / np.outer(variance, ones)
    # Backward_cpu
    if normalize_variance:
        assert variance is not None
        bd = top * top_diff
        m = bd @ ones
        bd = np.outer(m, ones)
        bd = top * bd
        m = top_diff @ ones
        bd = np.outer(m, ones) + bd
        bd = 1.0 * top_diff + (-1.0 / dim) * bd  # caffe_cpu_axpby
        bd = bd / np.outer(variance, ones)
    else:
        m = top_diff @ ones * (1.0 / dim)
        bd = top_diff + np.outer(-m, ones)
    return top.reshape(x4.shape), bd.reshape(x.shape)


def test_fields_and_defaults_from_caffe_proto() -> None:
    p = params_from_text("MVN", "")
    assert (p.normalize_variance, p.across_channels, p.eps) == (True, False, 1e-9)
    p = params_from_text("MVN", "mvn_param { normalize_variance: false across_channels: true "
                                "eps: 0.001 }")
    assert (p.normalize_variance, p.across_channels, p.eps) == (False, True, 0.001)
    assert kind("MVN").blobs == () and REGISTRY["MVN"] is kind("MVN")  # V1 enum MVN = 34


def test_shape_is_the_legacy_4d_shape() -> None:
    assert shapes("MVN", ((2, 3, 5, 7),)) == ((2, 3, 5, 7),)
    # top->Reshape(num(), channels(), height(), width()): missing axes become 1
    assert shapes("MVN", ((2, 10),)) == ((2, 10, 1, 1),)
    assert shapes("MVN", ((4, 3, 6),)) == ((4, 3, 6, 1),)


def test_more_than_four_axes_fail_caffes_check() -> None:
    shape_error("MVN", ((2, 3, 4, 5, 6),), match="at most 4 axes")


def test_shards_by_channel_unless_across_channels() -> None:
    k = kind("MVN")
    assert k.sharding(params("MVN"), ((2, 3, 4, 4),)).follow is Follow.CHANNELS
    assert k.sharding(params("MVN", across_channels=True), ((2, 3, 4, 4),)).follow is Follow.NONE


@pytest.mark.parametrize("normalize_variance", [True, False])
@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("eps", [1e-9, 0.5])
def test_forward_and_backward_match_caffe(normalize_variance: bool, across: bool,
                                          eps: float) -> None:
    """eps 0.5 makes Caffe's backward visibly differ from the true gradient of its
    forward; the kernel follows Caffe's."""
    shape = (2, 3, 4, 5)
    m, tops = lower("MVN", (shape,), normalize_variance=normalize_variance,
                    across_channels=across, eps=eps)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=torch.float64)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0]
    y.backward(dy)
    ref_top, ref_diff = caffe_mvn(np_(x), np_(dy), normalize_variance, across, eps)
    close(y, ref_top, 1e-12)
    assert x.grad is not None
    close(x.grad, ref_diff, 1e-12)


def test_two_axis_bottom_and_a_constant_plane() -> None:
    """A (N, C) bottom normalises single elements (top 0, a 4-D blob); a constant plane
    gives 0, not NaN, and a finite gradient."""
    m, tops = lower("MVN", ((3, 4),))
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    (y,) = m(x)
    assert tops == ((3, 4, 1, 1),) and tuple(y.shape) == (3, 4, 1, 1)
    assert torch.equal(y, torch.zeros_like(y))
    x2 = torch.full((1, 2, 3, 3), 2.5, dtype=torch.float64, requires_grad=True)
    m2, _ = lower("MVN", ((1, 2, 3, 3),))
    (y2,) = m2(x2)
    dy = torch.randn_like(x2)
    y2.backward(dy)
    assert torch.equal(y2, torch.zeros_like(y2))
    assert x2.grad is not None and torch.isfinite(x2.grad).all()
    close(x2.grad, caffe_mvn(np_(x2), np_(dy), True, False, 1e-9)[1], 1e-6)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, """name: "n"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "mvn" type: "MVN" bottom: "data" top: "mvn"
        mvn_param { normalize_variance: false across_channels: true eps: 0.01 } }
layer { name: "mvn2" type: "MVN" bottom: "mvn" top: "mvn2" }
""")
