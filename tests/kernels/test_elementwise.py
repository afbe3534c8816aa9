"""netdsl.kernels.elementwise.eltwise against a numpy transcription of Caffe's C++ loop.

``caffe_eltwise_ref`` follows ``EltwiseLayer::Forward_cpu`` (SUM with coefficients,
PROD, MAX with its mask); the kernel's output must match it and its autograd gradient
must be Caffe's backward (the coefficient, the product of the other inputs, or the whole
gradient to the input the MAX mask picks, with Caffe's tie rule).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netdsl.kernels.elementwise import eltwise
from tests.kernels.caffe_refs import _t

# --------------------------------------------------------------------------------------
# Reference transcriptions of Caffe
# --------------------------------------------------------------------------------------


def caffe_eltwise_ref(inputs, op, coeffs=None):
    """EltwiseLayer Forward_cpu; returns top and the MAX mask."""
    count = inputs[0].size
    flat = [a.reshape(-1) for a in inputs]
    top = np.zeros(count)
    mask = np.full(count, -1)
    if op == "SUM":
        coeffs = coeffs or [1.0] * len(inputs)
        for a, c in zip(flat, coeffs, strict=True):
            top += c * a
    elif op == "PROD":
        top = flat[0] * flat[1]
        for a in flat[2:]:
            top = top * a
    else:
        for idx in range(count):
            if flat[0][idx] > flat[1][idx]:
                top[idx], mask[idx] = flat[0][idx], 0
            else:
                top[idx], mask[idx] = flat[1][idx], 1
        for b in range(2, len(flat)):
            for idx in range(count):
                if flat[b][idx] > top[idx]:
                    top[idx], mask[idx] = flat[b][idx], b
    return top.reshape(inputs[0].shape), mask.reshape(inputs[0].shape)


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_inputs", [2, 3, 4])
@pytest.mark.parametrize("op", ["SUM", "PROD", "MAX"])
def test_eltwise_matches_caffe(n_inputs, op):
    rng = np.random.default_rng(n_inputs)
    inputs = [rng.integers(-2, 3, size=(2, 3, 4)).astype(np.float64) for _ in range(n_inputs)]
    coeffs = [0.5, -1.0, 2.0, 3.0][:n_inputs] if op == "SUM" else None
    ref, mask = caffe_eltwise_ref(inputs, op, coeffs)
    ts = [_t(a, grad=True) for a in inputs]
    out = eltwise(*ts, op=op, coeffs=coeffs)
    np.testing.assert_allclose(out.detach().numpy(), ref)
    dy = rng.normal(size=ref.shape)
    grads = torch.autograd.grad(out, ts, _t(dy))
    for i, g in enumerate(grads):
        if op == "SUM":
            expected = coeffs[i] * dy
        elif op == "PROD":
            expected = dy * np.prod([a for j, a in enumerate(inputs) if j != i], axis=0)
        else:
            expected = dy * (mask == i)
        np.testing.assert_allclose(g.numpy(), expected, err_msg=f"input {i}")


def test_eltwise_max_tie_rule_and_errors():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([1.0, 1.0], requires_grad=True)
    c = torch.tensor([1.0, 2.0], requires_grad=True)
    out = eltwise(a, b, c, op="MAX")
    ga, gb, gc = torch.autograd.grad(out.sum(), [a, b, c])
    # tie 0/1 goes to input 1; a later tie (c) does not take over
    assert ga.tolist() == [0.0, 1.0] and gb.tolist() == [1.0, 0.0] and gc.tolist() == [0, 0]
    plain = eltwise(a.detach(), b.detach())
    assert torch.equal(plain, a.detach() + b.detach())
    with pytest.raises(ValueError, match="at least two"):
        eltwise(a)
    with pytest.raises(ValueError, match="only for SUM"):
        eltwise(a, b, op="MAX", coeffs=[1.0, 2.0])
    with pytest.raises(ValueError, match="one coefficient"):
        eltwise(a, b, op="SUM", coeffs=[1.0])
    with pytest.raises(ValueError, match="equal shapes"):
        eltwise(a, torch.ones(3))
    with pytest.raises(ValueError, match="operation"):
        eltwise(a, b, op="MIN")
