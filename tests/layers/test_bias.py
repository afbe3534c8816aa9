from __future__ import annotations

from netdsl.layers.base import FillerType

from .helpers import close, kind, lower, np_, params, params_from_text, rand, shape_error, shapes

B = (2, 3, 4, 5)


def test_param_shapes_and_defaults() -> None:
    k = kind("Bias")
    assert k.param_shapes(params("Bias"), (B,)) == {"bias": (3,)}
    assert k.param_shapes(params("Bias", num_axes=-1), (B,)) == {"bias": (3, 4, 5)}
    assert k.param_shapes(params("Bias"), (B, (3,))) == {}
    p = params_from_text("Bias", "bias_param { axis: 2 }")
    assert p.axis == 2 and p.num_axes == 1 and p.filler.type is FillerType.constant
    assert p.filler.value == 0.0


def test_shapes_and_checks() -> None:
    assert shapes("Bias", (B, (3, 4))) == (B,)
    shape_error("Bias", (B, (4,)), match="at axis 1", field="axis", axis=1)
    shape_error("Bias", (B,), match="past the end", field="num_axes", num_axes=4)


def test_lowering() -> None:
    x = rand(*B)
    m, _ = lower("Bias", (B,))
    close(m(x)[0], np_(x) + np_(m.bias)[None, :, None, None])
    b = rand(4, 5, seed=2)
    m, _ = lower("Bias", (B, (4, 5)), axis=-2)
    assert list(m.parameters()) == []
    close(m(x, b)[0], np_(x) + np_(b)[None, None])
