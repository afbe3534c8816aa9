"""MultinomialLogisticLoss against a numpy transcription of Caffe's
multinomial_logistic_loss_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY

from .helpers import close, lower, shape_error, shapes
from .roundtrip import inputs, round_trip

K_LOG_THRESHOLD = 1e-20


def _reference(prob: np.ndarray, label: np.ndarray, top_diff: float
               ) -> tuple[float, np.ndarray]:
    num = prob.shape[0]
    dim = prob.size // num
    data = prob.ravel()
    loss = 0.0
    for i in range(num):
        loss -= np.log(max(data[i * dim + int(label.ravel()[i])], K_LOG_THRESHOLD))
    grad = np.zeros(prob.size)
    scale = -top_diff / num
    for i in range(num):
        lab = int(label.ravel()[i])
        grad[i * dim + lab] = scale / max(data[i * dim + lab], K_LOG_THRESHOLD)
    return loss / num, grad.reshape(prob.shape)


def test_names_arity_and_role() -> None:
    k = REGISTRY["MULTINOMIAL_LOGISTIC_LOSS"]
    assert k is REGISTRY["MultinomialLogisticLoss"] and k.is_loss
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 2, 1, 1)


def test_shapes_and_checks() -> None:
    assert shapes("MultinomialLogisticLoss", ((8, 10), (8,))) == ((),)
    assert shapes("MultinomialLogisticLoss", ((8, 10, 1, 1), (8, 1, 1, 1))) == ((),)
    shape_error("MultinomialLogisticLoss", ((8, 10), (4,)), match="same first dimension")
    shape_error("MultinomialLogisticLoss", ((8, 10), (8, 2)), match="one value per item",
                field="bottom")
    shape_error("MultinomialLogisticLoss", ((8, 10), (8, 1, 3)), match="one value per item")
    shape_error("MultinomialLogisticLoss", ((8, 10), (8, 1, 1, 1, 1)), match="4 axes at most")


def test_forward_and_backward_against_caffe() -> None:
    import torch

    gen = torch.Generator().manual_seed(2)
    prob = torch.softmax(torch.randn(5, 4, generator=gen, dtype=torch.float64) * 3, 1)
    prob[3, 1] = 1e-30  # below kLOG_THRESHOLD: the loss saturates, the gradient does not
    label = torch.tensor([0, 3, 2, 1, 1], dtype=torch.float64)
    prob.requires_grad_(True)
    m, _ = lower("MultinomialLogisticLoss", ((5, 4), (5,)))
    (loss,) = m(prob, label)
    (loss * 2.0).backward()
    want, grad = _reference(prob.detach().numpy(), label.numpy(), 2.0)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(prob.grad, grad, 1e-12)
    assert abs(float(prob.grad[3, 1])) == pytest.approx(2.0 / 5 / K_LOG_THRESHOLD)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(p=(4, 5), y=(4,)) + (
        'layer { name: "loss" type: "MultinomialLogisticLoss" bottom: "p" bottom: "y" '
        'top: "loss" }\n'))
