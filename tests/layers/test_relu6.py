"""ReLU6 (a fork layer) against a numpy transcription of eric612/MobileNet-YOLO's
src/caffe/layers/relu6_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import TYPES

from .convert_check import round_trip
from .helpers import close, lower, params_from_text, shapes


def fork_forward(x: np.ndarray, slope: float) -> np.ndarray:
    return np.minimum(np.maximum(x, 0) + slope * np.minimum(x, 0), 6.0)


def fork_backward(x: np.ndarray, top_diff: np.ndarray, slope: float) -> np.ndarray:
    return top_diff * ((x > 0) + slope * (x <= 0)) * (x < 6.0)


def test_marked_as_a_fork_and_defaults() -> None:
    assert "fork" in TYPES["ReLU6"].doc and "not in BVLC" in TYPES["ReLU6"].doc
    assert params_from_text("ReLU6", "").negative_slope == 0.0
    # NVIDIA/caffe's ReLU6 reads relu_param; eric612's relu6_param: both are read
    assert params_from_text("ReLU6", "relu_param { negative_slope: 0.1 }").negative_slope == 0.1
    assert params_from_text("ReLU6", "relu6_param { negative_slope: 0.2 }").negative_slope == 0.2
    assert shapes("ReLU6", ((2, 3, 4, 4),)) == ((2, 3, 4, 4),)


@pytest.mark.parametrize("slope", [0.0, 0.1])
def test_forward_and_backward_match_the_fork(slope: float) -> None:
    x = torch.randn(3, 40, dtype=torch.float64) * 5
    x[0, :4] = torch.tensor([0.0, 6.0, 5.9, -0.0])  # the kinks
    x.requires_grad_(True)
    m, _ = lower("ReLU6", ((3, 40),), negative_slope=slope)
    (y,) = m(x)
    xn = x.detach().numpy()
    close(y, fork_forward(xn, slope), 1e-12)
    top_diff = torch.randn_like(x)
    (grad,) = torch.autograd.grad(y, x, top_diff)
    close(grad, fork_backward(xn, top_diff.numpy(), slope), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = round_trip(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "r" type: "ReLU6" bottom: "data" top: "data" }
layer { name: "l" type: "ReLU6" bottom: "data" top: "l" relu6_param { negative_slope: 0.1 } }
""")
    assert "type: ReLU6" in net and "relu6_param { negative_slope: 0.1 }" in back
