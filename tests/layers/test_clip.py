"""Clip against a numpy transcription of BVLC caffe's clip_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netdsl.layers import TYPES

from .helpers import close, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.maximum(lo, np.minimum(x, hi))  # top = max(min, min(bottom, max))


def caffe_backward(x: np.ndarray, top_diff: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return top_diff * ((x >= lo) & (x <= hi))  # both ends pass the gradient


def test_fields_and_shape() -> None:
    p = params_from_text("Clip", "clip_param { min: -1 max: 2.5 }")
    assert (p.min, p.max) == (-1.0, 2.5)
    assert TYPES["Clip"].doc.startswith("y = max(min, min(x, max))")
    assert shapes("Clip", ((2, 3, 4),), min=0.0, max=1.0) == ((2, 3, 4),)


def test_min_and_max_are_required() -> None:
    shape_error("Clip", ((2, 3),), match="needs 'min'", max=1.0)
    shape_error("Clip", ((2, 3),), match="needs 'max'", min=1.0)


def test_forward_and_backward_match_caffe() -> None:
    x = torch.randn(3, 4, 5, dtype=torch.float64) * 2
    x[0, 0, :2] = torch.tensor([-1.0, 1.5])  # exactly on the bounds
    y, top_diff, grad = run_backward("Clip", x, min=-1.0, max=1.5)
    xn = x.numpy()
    close(y, caffe_forward(xn, -1.0, 1.5), 1e-12)
    close(grad, caffe_backward(xn, top_diff.numpy(), -1.0, 1.5), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "c" type: "Clip" bottom: "data" top: "c" clip_param { min: -0.5 max: 6 } }
""")
    assert "min: -0.5  max: 6" in net
    assert "clip_param { min: -0.5 max: 6 }" in back
