"""SigmoidCrossEntropyLoss against a numpy transcription of Caffe master's
sigmoid_cross_entropy_loss_layer.cpp (Forward_cpu, Backward_cpu, get_normalizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.sigmoid_cross_entropy_loss import effective_normalization
from netdsl.layers.softmax_with_loss import Normalization

from .helpers import close, lower, params, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip


def _reference(x: np.ndarray, t: np.ndarray, ignore: int | None, mode: str,
               top_diff: float) -> tuple[float, np.ndarray]:
    """Forward_cpu and Backward_cpu, loop for loop."""
    xs, ts = x.ravel(), t.ravel()
    outer, inner = x.shape[0], x.size // x.shape[0]
    loss, valid = 0.0, 0
    for i in range(xs.size):
        if ignore is not None and int(ts[i]) == ignore:
            continue
        pos = float(xs[i] >= 0)
        loss -= xs[i] * (ts[i] - pos) - np.log(1 + np.exp(xs[i] - 2 * xs[i] * pos))
        valid += 1
    norm = max(1.0, {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer,
                     "NONE": 1}[mode])
    diff = 1 / (1 + np.exp(-xs)) - ts
    if ignore is not None:
        diff[ts.astype(int) == ignore] = 0  # astype(int) truncates, as static_cast<int>
    return loss / norm, (diff * top_diff / norm).reshape(x.shape)


def test_names_arity_and_role() -> None:
    k = REGISTRY["SIGMOID_CROSS_ENTROPY_LOSS"]
    assert k is REGISTRY["SigmoidCrossEntropyLoss"] and k.is_loss
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 2, 1, 1)
    assert k.param_shapes(params("SigmoidCrossEntropyLoss"), ((2, 3), (2, 3))) == {}


def test_shapes_and_checks() -> None:
    assert shapes("SigmoidCrossEntropyLoss", ((4, 5, 2, 2), (4, 20))) == ((),)
    shape_error("SigmoidCrossEntropyLoss", ((4, 5), (3, 5)), match="same first dimension",
                field="bottom")
    shape_error("SigmoidCrossEntropyLoss", ((4, 5), (4, 6)), match="same count",
                field="bottom")


def test_normalization_defaults_are_caffe_masters() -> None:
    def eff(**kw: object) -> Normalization:
        return effective_normalization(params("SigmoidCrossEntropyLoss", **kw))

    assert eff() is Normalization.BATCH_SIZE  # not LossParameter's VALID
    assert eff(normalize=True) is Normalization.VALID
    assert eff(normalize=False) is Normalization.BATCH_SIZE
    assert eff(normalization=Normalization.FULL, normalize=True) is Normalization.FULL


def test_params_from_caffe_text() -> None:
    p = params_from_text("SigmoidCrossEntropyLoss",
                         "loss_param { ignore_label: -1 normalization: NONE }")
    assert p.ignore_label == -1 and p.normalization is Normalization.NONE
    assert params_from_text("SigmoidCrossEntropyLoss", "").normalization is None


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, -1])
def test_forward_and_backward_against_caffe(mode: str, ignore: int | None) -> None:
    import torch

    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(3, 4, 2, generator=gen, dtype=torch.float64) * 4)
    x[0, 0, 0] = 0.0  # Caffe's gradient at 0 is sigmoid(0) - t
    t = torch.rand(3, 4, 2, generator=gen, dtype=torch.float64)
    t[1, :, 0] = -1.5  # truncates to -1: ignored when ignore_label is -1
    x.requires_grad_(True)
    m, _ = lower("SigmoidCrossEntropyLoss", ((3, 4, 2), (3, 4, 2)), ignore_label=ignore,
                 normalization=Normalization[mode])
    (loss,) = m(x, t)
    (loss * 0.7).backward()
    want_loss, want_grad = _reference(x.detach().numpy(), t.numpy(), ignore, mode, 0.7)
    assert loss.dim() == 0
    assert float(loss.detach()) == pytest.approx(want_loss, rel=1e-12)
    close(x.grad, want_grad, 1e-12)


def test_large_scores_stay_finite() -> None:
    import torch

    x = torch.tensor([[800.0, -800.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    m, _ = lower("SigmoidCrossEntropyLoss", ((1, 2), (1, 2)))
    (loss,) = m(x, t)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(1600.0)
    close(x.grad, np.array([[1.0, -1.0]]), 1e-12)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, inputs(x=(4, 3, 2), t=(4, 6)) + (
        'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
        'top: "loss" loss_param { ignore_label: -1 normalization: VALID } }\n'
        'layer { name: "l2" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
        'top: "l2" loss_weight: 0.5 }\n'))
