"""ReLU6 (a fork layer) against a numpy transcription of eric612/MobileNet-YOLO's
src/caffe/layers/relu6_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import TYPES

from .helpers import close, params_from_text, run_backward, shapes
from .roundtrip import convert_both_ways


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
    y, top_diff, grad = run_backward("ReLU6", x, negative_slope=slope)
    close(y, fork_forward(x.numpy(), slope), 1e-12)
    close(grad, fork_backward(x.numpy(), top_diff.numpy(), slope), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "r" type: "ReLU6" bottom: "data" top: "data" }
layer { name: "l" type: "ReLU6" bottom: "data" top: "l" relu6_param { negative_slope: 0.1 } }
""")
    assert "type: ReLU6" in net and "relu6_param { negative_slope: 0.1 }" in back
