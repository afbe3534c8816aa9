from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, params_from_text, rand


def test_names_and_defaults() -> None:
    assert REGISTRY["POWER"] is REGISTRY["Power"]
    p = params_from_text("Power", "")
    assert (p.power, p.scale, p.shift) == (1.0, 1.0, 0.0)


def test_lowering_general() -> None:
    x = rand(4, 5)
    m, _ = lower("Power", ((4, 5),), power=2.0, scale=0.5, shift=1.0)
    close(m(x)[0], (1.0 + 0.5 * np_(x)) ** 2)


def test_lowering_fractional_power() -> None:
    x = rand(4, 5).abs() + 0.1
    m, _ = lower("Power", ((4, 5),), power=0.5, scale=2.0, shift=0.0)
    close(m(x)[0], np.sqrt(2 * np_(x)))


def test_constant_special_cases() -> None:
    x = rand(3)
    m, _ = lower("Power", ((3,),), power=0.0, scale=3.0, shift=2.0)
    close(m(x)[0], np.ones(3))
    m, _ = lower("Power", ((3,),), power=3.0, scale=0.0, shift=2.0)
    close(m(x)[0], np.full(3, 8.0))
