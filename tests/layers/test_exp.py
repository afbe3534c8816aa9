"""Exp against a numpy transcription of BVLC caffe's exp_layer.cpp."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import REGISTRY

from .helpers import close, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_scales(base: float, scale: float, shift: float) -> tuple[float, float]:
    """ExpLayer::LayerSetUp: inner_scale_ and outer_scale_."""
    log_base = 1.0 if base == -1 else math.log(base)
    inner = log_base * scale
    outer = 1.0 if shift == 0 else (base**shift if base != -1 else math.exp(shift))
    return inner, outer


def caffe_forward(x: np.ndarray, base: float, scale: float, shift: float) -> np.ndarray:
    inner, outer = caffe_scales(base, scale, shift)
    top = np.exp(x) if inner == 1 else np.exp(inner * x)
    return top if outer == 1 else top * outer


def caffe_backward(top: np.ndarray, top_diff: np.ndarray, base: float, scale: float,
                   shift: float) -> np.ndarray:
    inner, _ = caffe_scales(base, scale, shift)
    diff = top * top_diff
    return diff if inner == 1 else diff * inner


def test_names_and_defaults() -> None:
    assert REGISTRY["EXP"] is REGISTRY["Exp"]
    p = params_from_text("Exp", "")
    assert (p.base, p.scale, p.shift) == (-1.0, 1.0, 0.0)
    assert shapes("Exp", ((2, 3),)) == ((2, 3),)


@pytest.mark.parametrize("base", [0.0, -2.0, float("inf")])
def test_base_checks(base: float) -> None:
    shape_error("Exp", ((2,),), match="base", field="base", base=base)


@pytest.mark.parametrize("base, scale, shift", [
    (-1.0, 1.0, 0.0), (-1.0, 0.5, 1.5), (2.0, 1.0, 0.0), (10.0, -0.3, 2.0), (0.5, 2.0, -1.0)])
def test_forward_and_backward_match_caffe(base: float, scale: float, shift: float) -> None:
    x = torch.randn(4, 5, dtype=torch.float64)
    y, top_diff, grad = run_backward("Exp", x, base=base, scale=scale, shift=shift)
    want = caffe_forward(x.numpy(), base, scale, shift)
    close(y, want, 1e-12)
    close(grad, caffe_backward(want, top_diff.numpy(), base, scale, shift), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layers { name: "e" type: EXP bottom: "data" top: "e" exp_param { base: 2 shift: 1 } }
""")
    assert "type: Exp  base: 2  shift: 1" in net
    assert "exp_param { base: 2 shift: 1 }" in back
