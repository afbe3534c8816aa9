"""ContrastiveLoss against a numpy transcription of Caffe's contrastive_loss_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY

from .helpers import close, lower, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip


def _reference(a: np.ndarray, b: np.ndarray, y: np.ndarray, margin: float, legacy: bool,
               top_diff: float) -> tuple[float, np.ndarray, np.ndarray]:
    """Forward_cpu and Backward_cpu, loop for loop."""
    num, channels = a.shape[0], a.size // a.shape[0]
    diff = (a - b).reshape(num, channels)
    dist_sq = np.array([diff[i] @ diff[i] for i in range(num)])
    loss = 0.0
    for i in range(num):
        if int(y.ravel()[i]):
            loss += dist_sq[i]
        elif legacy:
            loss += max(margin - dist_sq[i], 0.0)
        else:
            d = max(margin - np.sqrt(dist_sq[i]), 0.0)
            loss += d * d
    loss = loss / num / 2
    grads = []
    for sign in (1, -1):
        alpha = sign * top_diff / num
        out = np.zeros((num, channels))
        for j in range(num):
            if int(y.ravel()[j]):
                out[j] = alpha * diff[j]
                continue
            if legacy:
                mdist, beta = margin - dist_sq[j], -alpha
            else:
                dist = np.sqrt(dist_sq[j])
                mdist = margin - dist
                beta = -alpha * mdist / (dist + 1e-4)
            out[j] = beta * diff[j] if mdist > 0 else 0.0
        grads.append(out.reshape(a.shape))
    return loss, grads[0], grads[1]


def test_names_arity_and_role() -> None:
    k = REGISTRY["CONTRASTIVE_LOSS"]
    assert k is REGISTRY["ContrastiveLoss"] and k.is_loss
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (3, 3, 1, 1)


def test_shapes_and_checks() -> None:
    assert shapes("ContrastiveLoss", ((6, 5), (6, 5), (6,))) == ((),)
    assert shapes("ContrastiveLoss", ((6, 5, 1, 1), (6, 5), (6, 1, 1, 1))) == ((),)
    shape_error("ContrastiveLoss", ((6, 5), (4, 5), (6,)), match="same first dimension",
                field="bottom")
    shape_error("ContrastiveLoss", ((6, 5), (6, 4), (6,)), match="same channels")
    shape_error("ContrastiveLoss", ((6, 5, 2), (6, 5, 2), (6,)), match="height and width 1")
    shape_error("ContrastiveLoss", ((6, 5), (6, 5, 1, 3), (6,)), match="height and width 1")
    shape_error("ContrastiveLoss", ((6, 5), (6, 5), (6, 2)), match="one value per pair")
    shape_error("ContrastiveLoss", ((6, 5), (6, 5), (6, 1, 2)), match="one value per pair")
    shape_error("ContrastiveLoss", ((6, 5), (6, 5), (4,)), match="fewer values")
    shape_error("ContrastiveLoss", ((6, 5, 1, 1, 1), (6, 5), (6,)), match="4 axes at most")


def test_params_from_caffe_text() -> None:
    p = params_from_text("ContrastiveLoss", "")
    assert (p.margin, p.legacy_version) == (1.0, False)
    p = params_from_text("ContrastiveLoss",
                         "contrastive_loss_param { margin: 2.5 legacy_version: true }")
    assert (p.margin, p.legacy_version) == (2.5, True)


@pytest.mark.parametrize("legacy", [False, True])
def test_forward_and_backward_against_caffe(legacy: bool) -> None:
    import torch

    gen = torch.Generator().manual_seed(7)
    n, c = 10, 3
    a = torch.randn(n, c, 1, 1, generator=gen, dtype=torch.float64) * 0.6
    b = torch.randn(n, c, 1, 1, generator=gen, dtype=torch.float64) * 0.6
    b[4] = a[4]  # a dissimilar pair at distance 0
    y = torch.tensor([1, 0, 0, 1, 0, 0, 1, 0, 0, 0], dtype=torch.float64).reshape(n, 1, 1, 1)
    y[2] = 0.7  # cast to int: 0, dissimilar
    margin = 1.2
    a.requires_grad_(True)
    b.requires_grad_(True)
    m, _ = lower("ContrastiveLoss", ((n, c, 1, 1), (n, c, 1, 1), (n, 1, 1, 1)),
                 margin=margin, legacy_version=legacy)
    (loss,) = m(a, b, y)
    (loss * 1.3).backward()
    want, ga, gb = _reference(a.detach().numpy(), b.detach().numpy(), y.numpy(), margin,
                              legacy, 1.3)
    # both kinds of dissimilar pair occur: inside the margin and beyond it
    d = np.sqrt(((a - b).detach().numpy() ** 2).reshape(n, c).sum(1))
    assert (d[y.numpy().ravel() == 0] < margin).any() and (d > margin).any()
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(a.grad, ga, 1e-12)
    close(b.grad, gb, 1e-12)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(a=(8, 4), b=(8, 4), sim=(8,)) + (
        'layer { name: "loss" type: "ContrastiveLoss" bottom: "a" bottom: "b" bottom: "sim" '
        'top: "loss" contrastive_loss_param { margin: 2 legacy_version: true } }\n'))
