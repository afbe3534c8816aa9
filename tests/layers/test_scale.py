from __future__ import annotations

import numpy as np

from netdsl.layers.base import FillerType

from .helpers import close, kind, lower, np_, params, params_from_text, rand, shape_error, shapes

B = (2, 3, 4, 5)


def pshapes(bottoms: tuple, **kw: object) -> dict:
    return kind("Scale").param_shapes(params("Scale", **kw), bottoms)


def test_learned_param_shapes() -> None:
    assert pshapes((B,)) == {"weight": (3,)}
    assert pshapes((B,), num_axes=-1) == {"weight": (3, 4, 5)}
    assert pshapes((B,), num_axes=0) == {"weight": ()}
    assert pshapes((B,), axis=2, num_axes=2) == {"weight": (4, 5)}
    assert pshapes((B,), axis=-1) == {"weight": (5,)}
    assert pshapes((B,), bias_term=True) == {"weight": (3,), "bias": (3,)}


def test_two_bottoms_have_no_weight_and_bias_follows_bottom1() -> None:
    assert pshapes((B, (3, 4))) == {}
    assert pshapes((B, (3, 4)), bias_term=True) == {"bias": (3, 4)}
    assert shapes("Scale", (B, (3, 4))) == (B,)
    assert shapes("Scale", (B, ())) == (B,)


def test_defaults() -> None:
    p = params_from_text("Scale", "scale_param { bias_term: true }")
    assert p.axis == 1 and p.num_axes == 1 and p.bias_term
    assert p.filler.type is FillerType.constant and p.filler.value == 1.0
    assert p.bias_filler.value == 0.0


def test_checks() -> None:
    shape_error("Scale", (B, (3, 5)), match="at axis 2", field="axis", axis=1)
    shape_error("Scale", (B, (4, 5, 6)), match="runs past", field="axis", axis=2)
    shape_error("Scale", (B, (4,)), match="at axis 1", field="bottom")
    shape_error("Scale", (B,), match="past the end", field="num_axes", axis=2, num_axes=3)
    shape_error("Scale", (B,), match="num_axes", field="num_axes", num_axes=-2)
    shape_error("Scale", (B,), match="out of range", field="axis", axis=4)


def test_scalar_bottom1_ignores_axis_like_caffe() -> None:
    assert shapes("Scale", (B, ()), axis=7) == (B,)


def test_lowering_learned_with_bias() -> None:
    x = rand(*B)
    m, _ = lower("Scale", (B,), axis=1, num_axes=2, bias_term=True)
    w, b = np_(m.weight), np_(m.bias)
    assert w.shape == (3, 4) and b.shape == (3, 4)
    close(m(x)[0], np_(x) * w[None, :, :, None] + b[None, :, :, None])


def test_lowering_scalar_and_two_bottoms() -> None:
    x = rand(*B)
    m, _ = lower("Scale", (B,), num_axes=0)
    close(m(x)[0], np_(x) * float(m.weight.detach()))
    s = rand(4, 5, seed=3)
    m, _ = lower("Scale", (B, (4, 5)), axis=2, bias_term=True)
    assert m.weight is None and tuple(m.bias.shape) == (4, 5)
    close(m(x, s)[0], np_(x) * np_(s)[None, None] + np_(m.bias)[None, None])
    assert np.isfinite(np_(m(x, s)[0])).all()
