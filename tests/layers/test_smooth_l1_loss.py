"""SmoothL1Loss (Fast R-CNN's fork) against a numpy transcription of the fork's
smooth_L1_loss_layer.cu (its CPU path is NOT_IMPLEMENTED): SmoothL1Forward/Backward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY

from .helpers import close, kind, lower, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip


def _reference(b0: np.ndarray, b1: np.ndarray, w_in: np.ndarray | None,
               w_out: np.ndarray | None, sigma: float, top_diff: float
               ) -> tuple[float, np.ndarray, np.ndarray]:
    sigma2 = sigma * sigma
    diff = (b0 - b1).ravel()
    if w_in is not None:
        diff = w_in.ravel() * diff
    errors = np.empty_like(diff)
    for k, val in enumerate(diff):
        quadratic = abs(val) < 1.0 / sigma2
        errors[k] = 0.5 * val * val * sigma2 if quadratic else abs(val) - 0.5 / sigma2
    if w_out is not None:
        errors = w_out.ravel() * errors
    loss = errors.sum() / b0.shape[0]
    dd = np.empty_like(diff)
    for k, val in enumerate(diff):
        dd[k] = sigma2 * val if abs(val) < 1.0 / sigma2 else float(int(0 < val) - int(val < 0))
    grads = []
    for sign in (1, -1):
        g = sign * top_diff / b0.shape[0] * dd
        if w_in is not None and w_out is not None:
            g = g * w_in.ravel() * w_out.ravel()
        grads.append(g.reshape(b0.shape))
    return loss, grads[0], grads[1]


def test_names_arity_role_and_fork_mark() -> None:
    k = REGISTRY["SmoothL1Loss"]
    assert k.is_loss and k.caffe_names == ()
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 4, 1, 1)
    assert "(fork: Fast R-CNN's Caffe)" in k.doc


def test_shapes_and_checks() -> None:
    assert shapes("SmoothL1Loss", ((2, 84, 1, 1), (2, 84, 1, 1))) == ((),)
    s = (128, 84)
    assert shapes("SmoothL1Loss", (s, s, s, s)) == ((),)
    shape_error("SmoothL1Loss", (s, s, s), match="both inside and outside", field="bottom")
    shape_error("SmoothL1Loss", (s, (64, 84)), match="same first dimension")
    shape_error("SmoothL1Loss", (s, (128, 80)), match="targets .* channels, height and width")
    shape_error("SmoothL1Loss", (s, s, (128, 84, 2), s), match="inside weights")
    shape_error("SmoothL1Loss", (s, s, s, (128, 1)), match="outside weights")
    shape_error("SmoothL1Loss", (s, s, s, (64, 84)), match="first dimension 128")
    shape_error("SmoothL1Loss", ((2, 3, 4, 5, 6), (2, 3, 4, 5, 6)), match="4 axes at most")


def test_params_from_fork_text() -> None:
    assert params_from_text("SmoothL1Loss", "").sigma == 1.0
    assert params_from_text("SmoothL1Loss", "smooth_l1_loss_param { sigma: 3.0 }").sigma == 3.0


@pytest.mark.parametrize("sigma", [1.0, 3.0])
@pytest.mark.parametrize("weights", [False, True])
def test_forward_and_backward_against_the_fork(sigma: float, weights: bool) -> None:
    import torch

    gen = torch.Generator().manual_seed(11)
    shape = (4, 8, 2, 2)
    b0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    b1 = torch.randn(shape, generator=gen, dtype=torch.float64)
    b0[0, 0, 0, 0], b1[0, 0, 0, 0] = 1.0 / (sigma * sigma), 0.0  # on the switch: linear
    rest = ()
    if weights:
        w_in = (torch.rand(shape, generator=gen, dtype=torch.float64) > 0.5).double()
        w_in[0, 0, 0, 0] = 1.0
        w_out = torch.rand(shape, generator=gen, dtype=torch.float64)
        rest = (w_in, w_out)
    b0.requires_grad_(True)
    b1.requires_grad_(True)
    m, _ = lower("SmoothL1Loss", (shape,) * (2 + len(rest)), sigma=sigma)
    (loss,) = m(b0, b1, *rest)
    (loss * 0.9).backward()
    want, g0, g1 = _reference(b0.detach().numpy(), b1.detach().numpy(),
                              *(r.numpy() for r in rest) if rest else (None, None), sigma, 0.9)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(b0.grad, g0, 1e-12)
    close(b1.grad, g1, 1e-12)


def test_no_blobs_no_macs() -> None:
    k = kind("SmoothL1Loss")
    assert k.param_shapes(k.Params(), ((2, 4), (2, 4))) == {}


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(p=(16, 84), t=(16, 84), wi=(16, 84), wo=(16, 84)) + (
        'layer { name: "loss" type: "SmoothL1Loss" bottom: "p" bottom: "t" bottom: "wi" '
        'bottom: "wo" top: "loss" loss_weight: 1 smooth_l1_loss_param { sigma: 3.0 } }\n'))
