from __future__ import annotations

import pytest

from netdsl.layers import REGISTRY

from .helpers import lower, np_, rand, shape_error, shapes


def test_names_and_shape() -> None:
    k = REGISTRY["EUCLIDEAN_LOSS"]
    assert k is REGISTRY["EuclideanLoss"] and k.is_loss
    assert shapes("EuclideanLoss", ((4, 3), (4, 3, 1, 1))) == ((),)


def test_checks() -> None:
    shape_error("EuclideanLoss", ((4, 3), (4, 2)), match="same size per example",
                field="bottom")
    shape_error("EuclideanLoss", ((4, 3), (2, 6)), match="same first dimension")


def test_lowering() -> None:
    a, b = rand(4, 3, seed=1), rand(4, 3, 1, 1, seed=2)
    m, _ = lower("EuclideanLoss", ((4, 3), (4, 3, 1, 1)))
    (loss,) = m(a, b)
    diff = np_(a) - np_(b).reshape(4, 3)
    assert loss.dim() == 0
    assert float(loss) == pytest.approx((diff**2).sum() / 4 / 2, rel=1e-6)
