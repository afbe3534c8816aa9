"""Threshold against a numpy transcription of BVLC caffe's threshold_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netdsl.layers import REGISTRY

from .helpers import close, lower, params_from_text, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(x > threshold, 1.0, 0.0)  # strictly above


def test_names_and_defaults() -> None:
    assert REGISTRY["THRESHOLD"] is REGISTRY["Threshold"]
    assert params_from_text("Threshold", "").threshold == 0.0
    assert shapes("Threshold", ((2, 3, 4),)) == ((2, 3, 4),)


def test_forward_matches_caffe_and_has_no_gradient() -> None:
    x = torch.randn(3, 7, dtype=torch.float64)
    x[0, :2] = 0.25  # on the threshold: 0
    m, _ = lower("Threshold", ((3, 7),), threshold=0.25)
    xg = x.clone().requires_grad_(True)
    (y,) = m(xg)
    close(y, caffe_forward(x.numpy(), 0.25), 0)
    assert y.dtype == torch.float64 and not y.requires_grad  # Caffe: NOT_IMPLEMENTED


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layers { name: "t" type: THRESHOLD bottom: "data" top: "t" threshold_param { threshold: 0.5 } }
""")
    assert "type: Threshold" in net and "threshold_param { threshold: 0.5 }" in back
