from __future__ import annotations

import numpy as np

from .helpers import close, lower, np_, params_from_text, rand, shapes


def test_shape_and_params() -> None:
    assert shapes("ELU", ((2, 3),)) == ((2, 3),)
    assert params_from_text("ELU", "elu_param { alpha: 0.5 }").alpha == 0.5
    assert params_from_text("ELU", "").alpha == 1.0


def test_lowering() -> None:
    x = rand(3, 4) * 2
    m, _ = lower("ELU", ((3, 4),), alpha=0.5)
    xn = np_(x)
    close(m(x)[0], np.where(xn > 0, xn, 0.5 * (np.exp(xn) - 1)))
