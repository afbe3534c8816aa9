"""Log against a numpy transcription of BVLC caffe's log_layer.cpp."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import close, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, base: float, scale: float, shift: float) -> np.ndarray:
    base_scale = 1.0 if base == -1 else 1.0 / math.log(base)
    if scale == 1 and shift == 0:
        top = np.log(x)
    else:
        top = x.copy()
        if scale != 1:
            top = top * scale
        if shift != 0:
            top = top + shift
        top = np.log(top)
    return top if base_scale == 1 else top * base_scale


def caffe_backward(x: np.ndarray, top_diff: np.ndarray, base: float, scale: float,
                   shift: float) -> np.ndarray:
    log_base = 1.0 if base == -1 else math.log(base)
    backward_num_scale = scale / log_base
    diff = x.copy()
    if scale != 1:
        diff = diff * scale
    if shift != 0:
        diff = diff + shift
    diff = diff ** -1.0
    if backward_num_scale != 1:
        diff = diff * backward_num_scale
    return top_diff * diff


def test_defaults() -> None:
    p = params_from_text("Log", "log_param { }")
    assert (p.base, p.scale, p.shift) == (-1.0, 1.0, 0.0)
    assert shapes("Log", ((2, 3),)) == ((2, 3),)


@pytest.mark.parametrize("base, match", [(0.0, "strictly positive"), (-3.0, "strictly positive"),
                                         (1.0, "base 1"), (float("inf"), "infinite")])
def test_base_checks(base: float, match: str) -> None:
    shape_error("Log", ((2,),), match=match, field="base", base=base)


@pytest.mark.parametrize("base, scale, shift", [
    (-1.0, 1.0, 0.0), (-1.0, 0.5, 1.5), (2.0, 1.0, 0.0), (10.0, 3.0, 2.0), (0.5, 2.0, 1.0)])
def test_forward_and_backward_match_caffe(base: float, scale: float, shift: float) -> None:
    x = torch.rand(4, 5, dtype=torch.float64) + 0.1
    y, top_diff, grad = run_backward("Log", x, base=base, scale=scale, shift=shift)
    xn = x.numpy()
    close(y, caffe_forward(xn, base, scale, shift), 1e-12)
    close(grad, caffe_backward(xn, top_diff.numpy(), base, scale, shift), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "l" type: "Log" bottom: "data" top: "l" log_param { base: 10 scale: 2 } }
""")
    assert "base: 10  scale: 2" in net and "log_param { base: 10 scale: 2 }" in back
