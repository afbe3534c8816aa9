"""Swish against a numpy transcription of BVLC caffe's swish_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import close, params_from_text, run_backward, shapes
from .roundtrip import convert_both_ways


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.tanh(0.5 * x) + 0.5  # Caffe's SigmoidLayer


def caffe_forward(x: np.ndarray, beta: float) -> np.ndarray:
    return x * sigmoid(beta * x)


def caffe_backward(x: np.ndarray, top_diff: np.ndarray, beta: float) -> np.ndarray:
    swish_x = caffe_forward(x, beta)
    s = sigmoid(beta * x)
    return top_diff * (beta * swish_x + s * (1.0 - beta * swish_x))


def test_defaults() -> None:
    assert params_from_text("Swish", "").beta == 1.0
    assert shapes("Swish", ((5,),)) == ((5,),)


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_forward_and_backward_match_caffe(beta: float) -> None:
    x = torch.randn(4, 6, dtype=torch.float64) * 3
    y, top_diff, grad = run_backward("Swish", x, beta=beta)
    close(y, caffe_forward(x.numpy(), beta), 1e-12)
    close(grad, caffe_backward(x.numpy(), top_diff.numpy(), beta), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "s" type: "Swish" bottom: "data" top: "s" swish_param { beta: 1.5 } }
""")
    assert "beta: 1.5" in net and "swish_param { beta: 1.5 }" in back
