from __future__ import annotations

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.softmax_with_loss import Normalization, effective_normalization

from .helpers import close, kind, lower, np_, params, params_from_text, rand, shape_error, shapes


def _reference(x: np.ndarray, labels: np.ndarray, ignore: int | None, mode: str) -> float:
    """Caffe's SoftmaxWithLoss for axis 1 on (N, C, H, W), written out with loops."""
    n, c = x.shape[:2]
    inner = int(np.prod(x.shape[2:]))
    xs = x.reshape(n, c, inner)
    loss, valid = 0.0, 0
    for i in range(n):
        for j in range(inner):
            lab = int(labels.reshape(n, inner)[i, j])
            if ignore is not None and lab == ignore:
                continue
            z = xs[i, :, j] - xs[i, :, j].max()
            p = np.exp(z) / np.exp(z).sum()
            loss -= np.log(max(p[lab], np.finfo(np.float32).tiny))
            valid += 1
    norm = {"FULL": n * inner, "VALID": valid if ignore is not None else n * inner,
            "BATCH_SIZE": n, "NONE": 1}[mode]
    return loss / max(1.0, norm)


def test_names_and_flags() -> None:
    k = REGISTRY["SOFTMAX_LOSS"]
    assert k is REGISTRY["SoftmaxWithLoss"] and k.is_loss
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 2, 1, 2)


def test_shapes() -> None:
    assert shapes("SoftmaxWithLoss", ((8, 10), (8,))) == ((),)
    assert shapes("SoftmaxWithLoss", ((8, 10), (8, 1, 1, 1)), tops=2) == ((), (8, 10))
    assert shapes("SoftmaxWithLoss", ((2, 21, 5, 6), (2, 1, 5, 6))) == ((),)
    assert shapes("SoftmaxWithLoss", ((2, 5, 7), (2, 5)), axis=-1) == ((),)


def test_label_count_must_match() -> None:
    err = shape_error("SoftmaxWithLoss", ((2, 21, 5, 6), (2, 5, 6, 2)), match="60",
                      field="axis", axis=1)
    assert "[2, 5, 6]" in (err.hint or "")


def test_first_dimension_must_match() -> None:
    shape_error("SoftmaxWithLoss", ((8, 10), (4, 2)), match="same first dimension",
                field="bottom")
    shape_error("SoftmaxWithLoss", ((8, 10), (8, 2)), match="16", field="bottom")


def test_normalization_resolution() -> None:
    def eff(**kw: object) -> Normalization:
        return effective_normalization(params("SoftmaxWithLoss", **kw))

    assert eff() is Normalization.VALID
    assert eff(normalize=False) is Normalization.BATCH_SIZE
    assert eff(normalize=True) is Normalization.VALID
    assert eff(normalization=Normalization.VALID, normalize=False) is Normalization.VALID
    assert eff(normalization=Normalization.NONE) is Normalization.NONE


def test_params_from_caffe_text() -> None:
    p = params_from_text(
        "SoftmaxWithLoss",
        "loss_param { ignore_label: 255 normalization: FULL } softmax_param { axis: 1 }",
    )
    assert p.ignore_label == 255 and p.normalization is Normalization.FULL and p.axis == 1


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_lowering_against_reference(mode: str) -> None:
    import torch

    x = rand(2, 4, 3, 3) * 3
    labels = torch.randint(0, 4, (2, 1, 3, 3), generator=torch.Generator().manual_seed(1))
    labels[0, 0, 0, :] = 255
    m, _ = lower("SoftmaxWithLoss", ((2, 4, 3, 3), (2, 1, 3, 3)), ignore_label=255,
                 normalization=Normalization[mode])
    (loss,) = m(x, labels.float())
    assert loss.dim() == 0
    expected = _reference(np_(x), labels.numpy(), 255, mode)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_second_top_is_the_softmax_and_loss_is_unweighted() -> None:
    import torch

    x = rand(5, 7)
    labels = torch.arange(5) % 7
    m, tops = lower("SoftmaxWithLoss", ((5, 7), (5,)), tops=2)
    loss, prob = m(x, labels)
    close(prob, torch.softmax(x, 1))
    expected = _reference(np_(x), labels.numpy(), None, "VALID")
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert tuple(prob.shape) == tops[1]


def test_no_learnable_blobs() -> None:
    assert kind("SoftmaxWithLoss").param_shapes(params("SoftmaxWithLoss"), ((2, 3), (2,))) == {}
