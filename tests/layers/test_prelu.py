from __future__ import annotations

import numpy as np

from netdsl.layers.base import FillerType

from .helpers import close, kind, lower, np_, params, rand, shape_error, shapes


def test_shape_and_param_shapes() -> None:
    assert shapes("PReLU", ((2, 3, 4, 4),)) == ((2, 3, 4, 4),)
    k = kind("PReLU")
    assert k.param_shapes(params("PReLU"), ((2, 3, 4, 4),)) == {"weight": (3,)}
    assert k.param_shapes(params("PReLU", channel_shared=True), ((2, 3, 4, 4),)) == {
        "weight": ()
    }


def test_default_filler_is_caffe_constant_quarter() -> None:
    f = kind("PReLU").fillers(params("PReLU"))["weight"]
    assert f.type is FillerType.constant and f.value == 0.25


def test_needs_two_axes() -> None:
    shape_error("PReLU", ((5,),), match="at least 2 axes")


def test_lowering_per_channel_and_shared() -> None:
    x = rand(2, 3, 4, 5)
    m, _ = lower("PReLU", ((2, 3, 4, 5),))
    a = np_(m.weight)
    assert a.shape == (3,)
    xn = np_(x)
    close(m(x)[0], np.maximum(xn, 0) + a[None, :, None, None] * np.minimum(xn, 0))
    m, _ = lower("PReLU", ((2, 3, 4, 5),), channel_shared=True)
    assert tuple(m.weight.shape) == ()
    close(m(x)[0], np.maximum(xn, 0) + float(m.weight.detach()) * np.minimum(xn, 0))
