"""Reduction against a numpy transcription of BVLC caffe's reduction_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import close, params_from_text, run_backward, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, axis: int, op: str, coeff: float) -> np.ndarray:
    num = int(np.prod(x.shape[:axis]))
    dim = x.size // num
    if op == "MEAN":
        coeff /= dim
    rows, top = x.reshape(num, dim), np.zeros(num)
    for i in range(num):
        if op in ("SUM", "MEAN"):
            top[i] = np.dot(np.ones(dim), rows[i])
        elif op == "ASUM":
            top[i] = np.abs(rows[i]).sum()
        else:
            top[i] = np.dot(rows[i], rows[i])
    if coeff != 1:
        top *= coeff
    return top.reshape(x.shape[:axis])


def caffe_backward(x: np.ndarray, top_diff: np.ndarray, axis: int, op: str, coeff: float
                   ) -> np.ndarray:
    num = int(np.prod(x.shape[:axis]))
    dim = x.size // num
    if op == "MEAN":
        coeff /= dim
    rows, diff = x.reshape(num, dim), top_diff.reshape(num)
    out = np.zeros((num, dim))
    for i in range(num):
        bottom_coeff = diff[i] * coeff
        if op in ("SUM", "MEAN"):
            out[i] = bottom_coeff
        elif op == "ASUM":
            out[i] = np.sign(rows[i]) * bottom_coeff  # caffe_cpu_sign: 0 at 0
        else:
            out[i] = 2 * bottom_coeff * rows[i]
    return out.reshape(x.shape)


def test_defaults_and_shapes() -> None:
    p = params_from_text("Reduction", "reduction_param { operation: MEAN }")
    assert (p.operation.name, p.axis, p.coeff) == ("MEAN", 0, 1.0)
    assert shapes("Reduction", ((2, 3, 4),)) == ((),)  # axis 0: a scalar
    assert shapes("Reduction", ((2, 3, 4),), axis=1) == ((2,),)
    assert shapes("Reduction", ((2, 3, 4),), axis=-1) == ((2, 3),)


def test_axis_check() -> None:
    from .helpers import shape_error

    shape_error("Reduction", ((2, 3),), match="out of range", field="axis", axis=2)


@pytest.mark.parametrize("op", ["SUM", "ASUM", "SUMSQ", "MEAN"])
@pytest.mark.parametrize("axis, coeff", [(0, 1.0), (1, -0.5), (2, 3.0)])
def test_forward_and_backward_match_caffe(op: str, axis: int, coeff: float) -> None:
    from netdsl.layers.reduction import ReductionOp

    shape = (2, 3, 4)
    x = torch.randn(shape, dtype=torch.float64)
    x[0, 0, 0] = 0.0  # ASUM's gradient there: 0
    y, top_diff, grad = run_backward("Reduction", x, operation=ReductionOp[op], axis=axis,
                                     coeff=coeff)
    xn = x.numpy()
    close(y, caffe_forward(xn, axis, op, coeff), 1e-12)
    close(grad, caffe_backward(xn, top_diff.numpy(), axis, op, coeff), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
layer { name: "r" type: "Reduction" bottom: "data" top: "r"
        reduction_param { operation: ASUM axis: 1 coeff: 0.5 } }
""")
    assert "operation: ASUM  axis: 1  coeff: 0.5" in net
    assert "reduction_param { operation: ASUM axis: 1 coeff: 0.5 }" in back
