"""LSTMUnit against a numpy transcription of Caffe's lstm_unit_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, shape_error, shapes
from .roundtrip import inputs, round_trip


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x))


def tanh(x: float) -> float:
    return 2.0 * sigmoid(2.0 * x) - 1.0  # as lstm_unit_layer.cpp defines it


def _gates(x: np.ndarray, cont: np.ndarray, n: int, d: int, hidden: int
           ) -> tuple[float, float, float, float]:
    """The gates i, f, o, g of unit ``d`` of item ``n``, as both loops compute them (f is
    0 where cont is: the sequence restarts)."""
    i = sigmoid(x[n, d])
    f = 0.0 if cont[n] == 0 else cont[n] * sigmoid(x[n, hidden + d])
    o = sigmoid(x[n, 2 * hidden + d])
    g = tanh(x[n, 3 * hidden + d])
    return i, f, o, g


def unit_forward(c_prev: np.ndarray, x: np.ndarray, cont: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Forward_cpu on (N, H), (N, 4H), (N,): returns C, H."""
    num, hidden = c_prev.shape
    c_out, h_out = np.zeros((num, hidden)), np.zeros((num, hidden))
    for n in range(num):
        for d in range(hidden):
            i, f, o, g = _gates(x, cont, n, d, hidden)
            c = f * c_prev[n, d] + i * g
            c_out[n, d] = c
            h_out[n, d] = o * tanh(c)
    return c_out, h_out


def unit_backward(c_prev: np.ndarray, x: np.ndarray, cont: np.ndarray, c_top: np.ndarray,
                  c_diff: np.ndarray, h_diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward_cpu: returns the diffs of C_prev and X."""
    num, hidden = c_prev.shape
    c_prev_diff, x_diff = np.zeros((num, hidden)), np.zeros((num, 4 * hidden))
    for n in range(num):
        for d in range(hidden):
            i, f, o, g = _gates(x, cont, n, d, hidden)
            tanh_c = tanh(c_top[n, d])
            c_term_diff = c_diff[n, d] + h_diff[n, d] * o * (1 - tanh_c * tanh_c)
            c_prev_diff[n, d] = c_term_diff * f
            x_diff[n, d] = c_term_diff * g * i * (1 - i)
            x_diff[n, hidden + d] = c_term_diff * c_prev[n, d] * f * (1 - f)
            x_diff[n, 2 * hidden + d] = h_diff[n, d] * tanh_c * o * (1 - o)
            x_diff[n, 3 * hidden + d] = c_term_diff * i * (1 - g * g)
    return c_prev_diff, x_diff


def test_names_and_arity() -> None:
    k = REGISTRY["LSTMUnit"]
    assert k.caffe_names == () and not k.is_loss and k.blobs == ()
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (3, 3, 2, 2)


def test_shapes_and_checks() -> None:
    assert shapes("LSTMUnit", ((1, 3, 7), (1, 3, 28), (1, 3)), tops=2) == ((1, 3, 7),) * 2
    shape_error("LSTMUnit", ((3, 7), (1, 3, 28), (1, 3)), 2, match="c_prev must have 3 axes",
                field="bottom")
    shape_error("LSTMUnit", ((1, 3, 7), (1, 3, 28), (1, 3, 1)), 2, match="cont must have 2")
    shape_error("LSTMUnit", ((1, 3, 7), (1, 3, 28, 1), (1, 3)), 2, match="gate input must")
    shape_error("LSTMUnit", ((2, 3, 7), (2, 3, 28), (2, 3)), 2, match="single timestep")
    shape_error("LSTMUnit", ((1, 3, 7), (1, 3, 28), (2, 3)), 2, match="single timestep")
    shape_error("LSTMUnit", ((1, 3, 7), (1, 4, 28), (1, 3)), 2, match="3 streams")
    shape_error("LSTMUnit", ((1, 3, 7), (1, 3, 28), (1, 2)), 2, match="3 streams")
    shape_error("LSTMUnit", ((1, 3, 7), (1, 3, 21), (1, 3)), 2, match="4 x 7 = 28")


@pytest.mark.parametrize("cont", [[0.0, 1.0, 1.0, 0.0], [0.5, 1.0, 2.0, 0.0]])
def test_forward_and_backward_against_caffe(cont: list[float]) -> None:
    """Binary cont, and a fractional one (where Caffe's backward uses f (1 - f) with f
    including cont, not the exact derivative)."""
    import torch

    gen = torch.Generator().manual_seed(8)
    n, h = 4, 5
    c_prev = (torch.rand(1, n, h, generator=gen, dtype=torch.float64) * 2 - 1)
    x = (torch.rand(1, n, 4 * h, generator=gen, dtype=torch.float64) * 4 - 2)
    cont_t = torch.tensor([cont], dtype=torch.float64)
    c_prev.requires_grad_(True)
    x.requires_grad_(True)
    m, tops = lower("LSTMUnit", ((1, n, h), (1, n, 4 * h), (1, n)), tops=2)
    c, hh = m(c_prev, x, cont_t)
    assert tuple(c.shape) == tuple(hh.shape) == tops[0]
    c_want, h_want = unit_forward(np_(c_prev)[0], np_(x)[0], np.array(cont))
    close(c[0], c_want, 1e-12)
    close(hh[0], h_want, 1e-12)
    gc = torch.randn(1, n, h, generator=gen, dtype=torch.float64)
    gh = torch.randn(1, n, h, generator=gen, dtype=torch.float64)
    ((c * gc).sum() + (hh * gh).sum()).backward()
    dc_prev, dx = unit_backward(np_(c_prev)[0], np_(x)[0], np.array(cont), np_(c)[0],
                                np_(gc)[0], np_(gh)[0])
    close(c_prev.grad[0], dc_prev, 1e-12)
    close(x.grad[0], dx, 1e-12)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(c0=(1, 3, 4), g=(1, 3, 16), cont=(1, 3)) + (
        'layer { name: "unit" type: "LSTMUnit" bottom: "c0" bottom: "g" bottom: "cont" '
        'top: "c1" top: "h1" }\n'))
