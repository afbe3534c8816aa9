"""Sigmoid, TanH, AbsVal, BNLL."""

from __future__ import annotations

import numpy as np
import pytest

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, rand, shapes


@pytest.mark.parametrize("name, v1", [("Sigmoid", "SIGMOID"), ("TanH", "TANH"),
                                      ("AbsVal", "ABSVAL"), ("BNLL", "BNLL")])
def test_names_and_shape(name: str, v1: str) -> None:
    assert REGISTRY[v1] is REGISTRY[name]
    assert shapes(name, ((2, 7),)) == ((2, 7),)


@pytest.mark.parametrize("name, ref", [
    ("Sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("TanH", np.tanh),
    ("AbsVal", np.abs),
    ("BNLL", lambda x: np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))),
])
def test_lowering(name: str, ref) -> None:
    x = rand(3, 4, 5) * 3
    m, _ = lower(name, ((3, 4, 5),))
    (y,) = m(x)
    close(y, ref(np_(x)))


def test_bnll_does_not_overflow() -> None:
    import torch

    m, _ = lower("BNLL", ((3,),))
    (y,) = m(torch.tensor([-200.0, 0.0, 200.0]))
    close(y, np.array([0.0, np.log(2.0), 200.0]))
