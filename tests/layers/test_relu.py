from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, params_from_text, rand, shapes


def test_names_and_shape() -> None:
    assert REGISTRY["RELU"] is REGISTRY["ReLU"]
    assert shapes("ReLU", ((2, 3, 4, 5),)) == ((2, 3, 4, 5),)
    assert REGISTRY["ReLU"].param_shapes(params_from_text("ReLU", ""), ((2, 3),)) == {}


def test_params_from_caffe_text() -> None:
    p = params_from_text("ReLU", "relu_param { negative_slope: 0.1 engine: CUDNN }")
    assert p.negative_slope == 0.1 and p.engine == "CUDNN"


def test_lowering_plain_and_leaky() -> None:
    x = rand(2, 3, 4)
    m, _ = lower("ReLU", ((2, 3, 4),))
    (y,) = m(x)
    close(y, np.maximum(np_(x), 0))
    m, _ = lower("ReLU", ((2, 3, 4),), negative_slope=0.1)
    (y,) = m(x)
    xn = np_(x)
    close(y, np.maximum(xn, 0) + 0.1 * np.minimum(xn, 0))


def test_slope_above_one_follows_caffe_formula() -> None:
    x = rand(10)
    m, _ = lower("ReLU", ((10,),), negative_slope=2.5)
    xn = np_(x)
    close(m(x)[0], np.maximum(xn, 0) + 2.5 * np.minimum(xn, 0))
