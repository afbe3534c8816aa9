"""LSTM against a numpy transcription of the net Caffe unrolls (lstm_layer.cpp
FillUnrolledNet: InnerProduct, Scale by cont, Eltwise SUM, LSTMUnit; recurrent_layer.cpp
for the carried state), forward and backward through time, with resets mid-sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.base import Filler, FillerType

from .helpers import close, kind, lower, np_, params, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip
from .test_lstm_unit import unit_backward, unit_forward
from .through_time import check_gradients, run_through_time, stepwise_equals_whole

T, N, H = 5, 3, 4
CONT = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float64)


def unrolled(x: np.ndarray, cont: np.ndarray, w: dict[str, np.ndarray], h0: np.ndarray,
             c0: np.ndarray, xs: np.ndarray | None, grad_h: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Forward of the unrolled net, then its backward for the top diff ``grad_h``;
    returns h, h_T, c_T and the diffs of x, x_static and every blob."""
    steps, streams = x.shape[:2]
    xf = x.reshape(steps, streams, -1)
    w_xc_x = xf @ w["W_xc"].T + w["b_c"]  # x_transform: InnerProduct, axis 2
    static = None if xs is None else xs.reshape(streams, -1) @ w["W_xc_static"].T
    h, c = h0, c0
    saved = []
    out = np.zeros((steps, streams, H))
    for t in range(steps):
        h_conted = h * cont[t][:, None]  # Scale, axis 0
        gate = h_conted @ w["W_hc"].T + w_xc_x[t]  # transform_t + gate_input_t (SUM)
        if static is not None:
            gate = gate + static
        c_new, h = unit_forward(c, gate, cont[t])
        saved.append((h_conted, gate, c, c_new))
        c = c_new
        out[t] = h
    grads = {k: np.zeros_like(v) for k, v in w.items()}
    d_gates = np.zeros((steps, streams, 4 * H))
    dh, dc = np.zeros((streams, H)), np.zeros((streams, H))  # recurrent outputs: diff 0
    for t in reversed(range(steps)):
        h_conted, gate, c_prev, c_new = saved[t]
        dc_prev, d_gate = unit_backward(c_prev, gate, cont[t], c_new, dc, grad_h[t] + dh)
        grads["W_hc"] += d_gate.T @ h_conted
        dh = (d_gate @ w["W_hc"]) * cont[t][:, None]
        dc = dc_prev
        d_gates[t] = d_gate
    grads["W_xc"] = np.einsum("tng,tni->gi", d_gates, xf)
    grads["b_c"] = d_gates.sum((0, 1))
    dx = (d_gates @ w["W_xc"]).reshape(x.shape)
    dxs = None
    if xs is not None:
        grads["W_xc_static"] = d_gates.sum(0).T @ xs.reshape(streams, -1)
        dxs = (d_gates.sum(0) @ w["W_xc_static"]).reshape(xs.shape)
    grads["dx"] = dx
    if dxs is not None:
        grads["dxs"] = dxs
    return out, h, c, grads


def _weights(m: Any) -> dict[str, np.ndarray]:
    return {k: np_(v) for k, v in m.kernel.named_parameters()}


def test_names_arity_and_blobs() -> None:
    k = REGISTRY["LSTM"]
    assert k.caffe_names == () and k.blobs == ("W_xc", "b_c", "W_hc")
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 5, 1, 3)
    assert k.reads_param_block("recurrent_param")


def test_shapes_blobs_and_macs() -> None:
    k = kind("LSTM")
    b = ((T, N, 3, 2), (T, N))
    assert shapes("LSTM", b, num_output=7) == ((T, N, 7),)
    p = params("LSTM", num_output=7)
    assert k.param_shapes(p, b) == {"W_xc": (28, 6), "b_c": (28,), "W_hc": (28, 7)}
    assert k.macs(p, b, ((T, N, 7),)) == T * N * 28 * (6 + 7)
    bs = (*b, (N, 2, 3, 4))  # Caffe's test_lstm_layer.cpp static input
    ps = k.param_shapes(p, bs)
    assert list(ps) == ["W_xc", "b_c", "W_xc_static", "W_hc"]  # the unrolled net's order
    assert ps["W_xc_static"] == (28, 24)
    assert k.macs(p, bs, ((T, N, 7),)) == T * N * 28 * 13 + N * 28 * 24
    pe = params("LSTM", num_output=7, expose_hidden=True)
    state = (1, N, 7)
    assert shapes("LSTM", (*b, state, state), 3, num_output=7, expose_hidden=True) == (
        (T, N, 7), state, state)
    assert list(k.param_shapes(pe, (*bs, state, state))) == ["W_xc", "b_c", "W_xc_static",
                                                             "W_hc"]
    assert list(k.param_shapes(pe, (*b, state, state))) == ["W_xc", "b_c", "W_hc"]


def test_checks() -> None:
    b = ((T, N, 6), (T, N))
    state = (1, N, 7)
    shape_error("LSTM", b, match="num_output must be positive", field="num_output",
                num_output=0)
    shape_error("LSTM", (*b, (N, 2), state), match="takes 2 or 3 bottoms", field="bottom",
                num_output=7)
    err = shape_error("LSTM", (*b, state), 3, match=r"takes 4 or 5 bottoms \(x, cont\[, "
                      r"x_static\], h0, c0\)", num_output=7, expose_hidden=True)
    assert err.hint is None
    shape_error("LSTM", (*b, state, state), 1, match="makes exactly 3 tops", field="top",
                num_output=7, expose_hidden=True)
    shape_error("LSTM", b, 2, match="makes exactly 1 tops", field="top", num_output=7)
    shape_error("LSTM", ((T, N), (T, N)), match="x must have at least 3 axes", num_output=7)
    shape_error("LSTM", ((T, N, 6), (T, N, 1)), match="exactly 2 axes", num_output=7)
    shape_error("LSTM", ((T, N, 6), (T + 1, N)), match="timesteps x streams", num_output=7)
    shape_error("LSTM", ((T, N, 6), (T, N + 1)), match="timesteps x streams", num_output=7)
    shape_error("LSTM", (*b, (N,)), match="x_static must have at least 2 axes", num_output=7)
    shape_error("LSTM", (*b, (N + 1, 5)), match="3 streams", num_output=7)
    shape_error("LSTM", (*b, (1, N, 6), state), 3, match="initial h", num_output=7,
                expose_hidden=True)
    shape_error("LSTM", (*b, (N, 5), state, (N, 7)), 3, match="initial c", num_output=7,
                expose_hidden=True)


def test_params_from_caffe_text() -> None:
    p = params_from_text("LSTM", "recurrent_param { num_output: 7 weight_filler { type: "
                         '"gaussian" std: 0.2 } bias_filler { type: "constant" value: 1 } '
                         "debug_info: true expose_hidden: true }")
    assert (p.num_output, p.debug_info, p.expose_hidden) == (7, True, True)
    f = kind("LSTM").fillers(p)
    assert f["W_xc"] == f["W_hc"] == f["W_xc_static"] == Filler(FillerType.gaussian, std=0.2)
    assert f["b_c"] == Filler(FillerType.constant, value=1.0)
    q = params_from_text("LSTM", "")
    assert (q.num_output, q.expose_hidden, q.weight_filler) == (0, False, Filler())


@pytest.mark.parametrize("static", [False, True])
def test_forward_and_backward_against_the_unrolled_net(static: bool) -> None:
    run = run_through_time("LSTM", (T, N, 3, 2), (N, 2, 3) if static else None, CONT, H, 21)
    zeros = np.zeros((N, H))
    want, _, _, grads = unrolled(np_(run.x), CONT, _weights(run.kernel), zeros, zeros,
                                 None if run.static is None else np_(run.static),
                                 np_(run.top_diff))
    close(run.top, want, 1e-12)
    check_gradients(run, grads)


def test_state_carries_over_between_batches_as_in_caffe() -> None:
    """Caffe's TestForward: the whole sequence in one batch equals one timestep per
    batch; the state is carried across forward passes, without gradient."""
    whole, x, nxt = stepwise_equals_whole("LSTM", CONT, H, seed=3)
    c_t = whole.kernel.cell[0].numpy()  # the state after the second batch
    assert c_t.shape == (N, H)
    zeros = np.zeros((N, H))
    _, h1, c1, _ = unrolled(np_(x), CONT, _weights(whole), zeros, zeros, None,
                            np.zeros((T, N, H)))
    want, _, c2, _ = unrolled(np_(x), np.ones((T, N)), _weights(whole), h1, c1, None,
                              np.zeros((T, N, H)))
    close(nxt, want, 1e-12)
    close(c_t, c2, 1e-12)


def test_expose_hidden_takes_and_gives_the_state() -> None:
    import torch

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(T, N, 6, generator=gen, dtype=torch.float64).requires_grad_(True)
    h0 = torch.randn(1, N, H, generator=gen, dtype=torch.float64).requires_grad_(True)
    c0 = torch.randn(1, N, H, generator=gen, dtype=torch.float64).requires_grad_(True)
    cont = torch.tensor(CONT)
    state = (1, N, H)
    m, tops = lower("LSTM", ((T, N, 6), (T, N), state, state), 3, num_output=H,
                    expose_hidden=True)
    m.kernel.double()
    h, h_t, c_t = m(x, cont, h0, c0)
    assert tuple(h_t.shape) == tuple(c_t.shape) == tops[1] == tops[2] == state
    grad_h = torch.randn(T, N, H, generator=gen, dtype=torch.float64)
    ((h * grad_h).sum()).backward()
    want, want_h, want_c, grads = unrolled(np_(x), CONT, _weights(m), np_(h0)[0], np_(c0)[0],
                                           None, np_(grad_h))
    close(h, want, 1e-12)
    close(h_t[0], want_h, 1e-12)
    close(c_t[0], want_c, 1e-12)
    close(x.grad, grads["dx"], 1e-12)
    # Caffe shares only the data of these blobs: no gradient reaches h0/c0, or leaves hT/cT
    assert h0.grad is None and c0.grad is None
    assert not h_t.requires_grad and not c_t.requires_grad
    # and nothing is carried: a second call gives the same
    close(m(x, cont, h0, c0)[0], want, 1e-12)


def test_convert_round_trip(tmp_path: Path) -> None:
    # netdsl gives every Input the first one's batch: T = N here
    round_trip(tmp_path, inputs(x=(2, 2, 5), cont=(2, 2), s=(2, 3)) + (
        'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "s" top: "h" '
        'recurrent_param { num_output: 4 weight_filler { type: "uniform" min: -0.08 '
        "max: 0.08 } } }\n"))
    round_trip(tmp_path, inputs(x=(1, 1, 5), cont=(1, 1), h0=(1, 1, 4), c0=(1, 1, 4)) + (
        'layer { name: "lstm" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" '
        'bottom: "c0" top: "h" top: "hT" top: "cT" param { lr_mult: 1 } param { lr_mult: 2 } '
        "recurrent_param { num_output: 4 expose_hidden: true } }\n"))
