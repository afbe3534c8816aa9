from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, rand, shape_error, shapes


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_names_and_shape() -> None:
    assert REGISTRY["SOFTMAX"] is REGISTRY["Softmax"]
    assert shapes("Softmax", ((2, 10, 3),), axis=-1) == ((2, 10, 3),)


def test_axis_out_of_range() -> None:
    shape_error("Softmax", ((2, 10),), match="axis 2 is out of range", field="axis", axis=2)
    shape_error("Softmax", ((2, 10),), field="axis", axis=-3)


def test_lowering_over_axis() -> None:
    x = rand(2, 3, 4, 5)
    for axis in (1, 2, -1):
        m, _ = lower("Softmax", ((2, 3, 4, 5),), axis=axis)
        close(m(x)[0], _softmax(np_(x), axis))
