"""RNN against a numpy transcription of the net Caffe unrolls (rnn_layer.cpp
FillUnrolledNet: InnerProduct, Scale by cont, Eltwise SUM, TanH; recurrent_layer.cpp for
the carried state), forward and backward through time, with resets mid-sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.base import Filler, FillerType

from .helpers import close, kind, lower, np_, params, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip
from .through_time import check_gradients, run_through_time, stepwise_equals_whole

T, N, H = 5, 3, 4
CONT = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float64)


def unrolled(x: np.ndarray, cont: np.ndarray, w: dict[str, np.ndarray], h0: np.ndarray,
             xs: np.ndarray | None, grad_o: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Forward of the unrolled net, then its backward for the top diff ``grad_o``;
    returns o, h_T and the diffs of x, x_static and every blob."""
    steps, streams = x.shape[:2]
    xf = x.reshape(steps, streams, -1)
    w_xh_x = xf @ w["W_xh"].T + w["b_h"]
    static = None if xs is None else xs.reshape(streams, -1) @ w["W_xh_static"].T
    h = h0
    hs, conted, outs = [], [], np.zeros((steps, streams, H))
    for t in range(steps):
        h_conted = h * cont[t][:, None]
        pre = h_conted @ w["W_hh"].T + w_xh_x[t]
        if static is not None:
            pre = pre + static
        h = np.tanh(pre)  # h_neuron_t: TanH
        outs[t] = np.tanh(h @ w["W_ho"].T + w["b_o"])  # W_ho_h_t, o_neuron_t
        hs.append(h)
        conted.append(h_conted)
    grads = {k: np.zeros_like(v) for k, v in w.items()}
    d_pre = np.zeros((steps, streams, H))
    dh_next = np.zeros((streams, H))
    for t in reversed(range(steps)):
        d_o = grad_o[t] * (1 - outs[t] ** 2)  # TanHLayer::Backward: diff * (1 - y^2)
        grads["W_ho"] += d_o.T @ hs[t]
        grads["b_o"] += d_o.sum(0)
        dh = d_o @ w["W_ho"] + dh_next  # Split of h_t: the diffs add
        d = dh * (1 - hs[t] ** 2)
        grads["W_hh"] += d.T @ conted[t]
        dh_next = (d @ w["W_hh"]) * cont[t][:, None]
        d_pre[t] = d
    grads["W_xh"] = np.einsum("tnh,tni->hi", d_pre, xf)
    grads["b_h"] = d_pre.sum((0, 1))
    grads["dx"] = (d_pre @ w["W_xh"]).reshape(x.shape)
    if xs is not None:
        grads["W_xh_static"] = d_pre.sum(0).T @ xs.reshape(streams, -1)
        grads["dxs"] = (d_pre.sum(0) @ w["W_xh_static"]).reshape(xs.shape)
    return outs, h, grads


def _weights(m: Any) -> dict[str, np.ndarray]:
    return {k: np_(v) for k, v in m.kernel.named_parameters()}


def test_names_arity_and_blobs() -> None:
    k = REGISTRY["RNN"]
    assert k.caffe_names == () and k.blobs == ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 4, 1, 2)


def test_shapes_blobs_and_macs() -> None:
    k = kind("RNN")
    b = ((T, N, 3, 2), (T, N))
    assert shapes("RNN", b, num_output=7) == ((T, N, 7),)
    p = params("RNN", num_output=7)
    assert k.param_shapes(p, b) == {"W_xh": (7, 6), "b_h": (7,), "W_hh": (7, 7),
                                    "W_ho": (7, 7), "b_o": (7,)}
    assert list(k.param_shapes(p, b)) == list(k.blobs)
    assert k.macs(p, b, ((T, N, 7),)) == T * N * 7 * (6 + 7 + 7)
    bs = (*b, (N, 5))
    assert list(k.param_shapes(p, bs)) == ["W_xh", "b_h", "W_xh_static", "W_hh", "W_ho", "b_o"]
    assert k.param_shapes(p, bs)["W_xh_static"] == (7, 5)
    assert k.macs(p, bs, ((T, N, 7),)) == T * N * 7 * 20 + N * 7 * 5
    state = (1, N, 7)
    assert shapes("RNN", (*b, state), 2, num_output=7, expose_hidden=True) == (
        (T, N, 7), state)
    assert shapes("RNN", (*bs, state), 2, num_output=7, expose_hidden=True) == (
        (T, N, 7), state)


def test_checks() -> None:
    b = ((T, N, 6), (T, N))
    state = (1, N, 7)
    err = shape_error("RNN", b, match="num_output must be positive")  # unset: Caffe's 0
    assert "num_output" in (err.hint or "")
    shape_error("RNN", b, match="num_output must be positive", field="num_output",
                num_output=-1)
    err = shape_error("RNN", (*b, (N, 2), state), match="takes 2 or 3 bottoms",
                      field="bottom", num_output=7)
    assert "expose_hidden" in (err.hint or "")
    shape_error("RNN", b, 2, match=r"takes 3 or 4 bottoms \(x, cont\[, x_static\], h0\)",
                num_output=7, expose_hidden=True)
    shape_error("RNN", (*b, state), 1, match=r"makes exactly 2 tops \(the output, hT\)",
                field="top", num_output=7, expose_hidden=True)
    shape_error("RNN", ((T, N), (T, N)), match="at least 3 axes", num_output=7)
    shape_error("RNN", ((0, N, 6), (0, N)), match="no timesteps", num_output=7)
    shape_error("RNN", ((T, N, 6), (T,)), match="exactly 2 axes", num_output=7)
    shape_error("RNN", ((T, N, 6), (T, 1)), match="timesteps x streams", num_output=7)
    shape_error("RNN", (*b, (N,)), match="x_static must have at least 2", num_output=7)
    shape_error("RNN", (*b, (1, 5)), match="3 streams", num_output=7)
    shape_error("RNN", (*b, (1, N, 8)), 2, match="initial h", num_output=7,
                expose_hidden=True)


def test_params_from_caffe_text() -> None:
    p = params_from_text("RNN", 'recurrent_param { num_output: 5 weight_filler { type: '
                         '"uniform" min: -0.1 max: 0.1 } bias_filler { type: "constant" } }')
    assert p.num_output == 5 and not p.expose_hidden
    f = kind("RNN").fillers(p)
    for name in ("W_xh", "W_xh_static", "W_hh", "W_ho"):
        assert f[name] == Filler(FillerType.uniform, min=-0.1, max=0.1)
    assert f["b_h"] == f["b_o"] == Filler()


@pytest.mark.parametrize("static", [False, True])
def test_forward_and_backward_against_the_unrolled_net(static: bool) -> None:
    run = run_through_time("RNN", (T, N, 2, 3), (N, 5) if static else None, CONT, H, 13)
    want, _, grads = unrolled(np_(run.x), CONT, _weights(run.kernel), np.zeros((N, H)),
                              None if run.static is None else np_(run.static),
                              np_(run.top_diff))
    close(run.top, want, 1e-12)
    check_gradients(run, grads)


def test_state_carries_over_between_batches_as_in_caffe() -> None:
    whole, x, nxt = stepwise_equals_whole("RNN", CONT, H, seed=4)
    _, h1, _ = unrolled(np_(x), CONT, _weights(whole), np.zeros((N, H)), None,
                        np.zeros((T, N, H)))
    want, _, _ = unrolled(np_(x), np.ones((T, N)), _weights(whole), h1, None,
                          np.zeros((T, N, H)))
    close(nxt, want, 1e-12)


def test_expose_hidden() -> None:
    import torch

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(T, N, 6, generator=gen, dtype=torch.float64)
    h0 = torch.randn(1, N, H, generator=gen, dtype=torch.float64).requires_grad_(True)
    cont = torch.tensor(CONT)
    m, _ = lower("RNN", ((T, N, 6), (T, N), (1, N, H)), 2, num_output=H, expose_hidden=True)
    m.kernel.double()
    o, h_t = m(x, cont, h0)
    want, want_h, _ = unrolled(np_(x), CONT, _weights(m), np_(h0)[0], None,
                               np.zeros((T, N, H)))
    close(o, want, 1e-12)
    close(h_t[0], want_h, 1e-12)
    o.sum().backward()
    assert h0.grad is None and not h_t.requires_grad


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(x=(1, 1, 5), cont=(1, 1), s=(1, 2), h0=(1, 1, 3)) + (
        'layer { name: "rnn" type: "RNN" bottom: "x" bottom: "cont" bottom: "s" bottom: "h0" '
        'top: "o" top: "hT" recurrent_param { num_output: 3 expose_hidden: true '
        'bias_filler { type: "constant" value: 0.5 } } }\n'))
