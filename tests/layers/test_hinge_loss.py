"""HingeLoss against a numpy transcription of Caffe's hinge_loss_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.hinge_loss import HingeNorm

from .helpers import close, lower, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip


def _reference(x: np.ndarray, label: np.ndarray, norm: str, top_diff: float
               ) -> tuple[float, np.ndarray]:
    """Forward_cpu (which leaves the hinges in bottom_diff) then Backward_cpu."""
    num = x.shape[0]
    dim = x.size // num
    diff = x.ravel().copy()
    for i in range(num):
        diff[i * dim + int(label.ravel()[i])] *= -1
    for i in range(num * dim):
        diff[i] = max(0.0, 1 + diff[i])
    loss = np.abs(diff).sum() / num if norm == "L1" else diff @ diff / num
    for i in range(num):
        diff[i * dim + int(label.ravel()[i])] *= -1
    grad = np.sign(diff) * top_diff / num if norm == "L1" else diff * top_diff * 2 / num
    return float(loss), grad.reshape(x.shape)


def test_names_arity_and_role() -> None:
    k = REGISTRY["HINGE_LOSS"]
    assert k is REGISTRY["HingeLoss"] and k.is_loss and k.reads_class_scores
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 2, 1, 1)


def test_shapes_and_checks() -> None:
    assert shapes("HingeLoss", ((8, 10), (8,))) == ((),)
    assert shapes("HingeLoss", ((8, 10, 2, 2), (8, 1, 1, 1))) == ((),)
    shape_error("HingeLoss", ((8, 10), (4,)), match="same first dimension", field="bottom")


def test_params_from_caffe_text() -> None:
    assert params_from_text("HingeLoss", "").norm is HingeNorm.L1
    assert params_from_text("HingeLoss", "hinge_loss_param { norm: L2 }").norm is HingeNorm.L2


@pytest.mark.parametrize("norm", ["L1", "L2"])
def test_forward_and_backward_against_caffe(norm: str) -> None:
    import torch

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 3, 2, generator=gen, dtype=torch.float64)
    x[0, 1, 0] = -1.0  # a hinge exactly at 0: no gradient in Caffe (sign 0)
    label = torch.tensor([0, 0, 5, 3, 1, 4], dtype=torch.float64)
    x.requires_grad_(True)
    m, _ = lower("HingeLoss", ((6, 3, 2), (6,)), norm=HingeNorm[norm])
    (loss,) = m(x, label)
    (loss * 0.5).backward()
    want, grad = _reference(x.detach().numpy(), label.numpy(), norm, 0.5)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(x.grad, grad, 1e-12)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(s=(4, 5), y=(4,)) + (
        'layer { name: "loss" type: "HingeLoss" bottom: "s" bottom: "y" top: "loss" '
        'hinge_loss_param { norm: L2 } }\n'))
