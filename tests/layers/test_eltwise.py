from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY
from netdsl.layers.eltwise import EltwiseOp

from .helpers import close, lower, np_, params_from_text, rand, shape_error, shapes


def test_names_defaults_shape() -> None:
    k = REGISTRY["ELTWISE"]
    assert k is REGISTRY["Eltwise"] and k.bottoms.min == 2
    p = params_from_text("Eltwise", "")
    assert p.operation is EltwiseOp.SUM and p.coeff == () and p.stable_prod_grad
    assert shapes("Eltwise", ((2, 3, 4), (2, 3, 4), (2, 3, 4))) == ((2, 3, 4),)


def test_repeated_coeff_from_caffe_text() -> None:
    p = params_from_text("Eltwise", "eltwise_param { operation: SUM coeff: 1 coeff: -1 }")
    assert p.coeff == (1.0, -1.0)


def test_checks() -> None:
    shape_error("Eltwise", ((2, 3), (2, 3), (2, 3)), match="2 coeff values for 3 bottoms",
                field="coeff", coeff=(1.0, 2.0))
    shape_error("Eltwise", ((2, 3), (2, 3)), match="SUM", field="coeff",
                operation=EltwiseOp.PROD, coeff=(1.0, 2.0))
    err = shape_error("Eltwise", ((2, 3, 4), (2, 3, 4), (2, 4, 3)), field="bottom")
    assert "bottom 2 has shape [2, 4, 3]" in err.message and "[2, 3, 4]" in err.message


def test_max_accepts_coeffs_like_caffe() -> None:
    assert shapes("Eltwise", ((2,), (2,)), operation=EltwiseOp.MAX, coeff=(1.0, 2.0)) == ((2,),)


def test_lowering() -> None:
    xs = [rand(2, 3, 4, seed=i) for i in range(3)]
    a, b, c = (np_(x) for x in xs)
    shape3 = ((2, 3, 4),) * 3
    m, _ = lower("Eltwise", shape3, coeff=(0.5, -1.0, 2.0))
    close(m(*xs)[0], 0.5 * a - b + 2 * c)
    m, _ = lower("Eltwise", shape3)
    close(m(*xs)[0], a + b + c)
    m, _ = lower("Eltwise", shape3, operation=EltwiseOp.PROD)
    close(m(*xs)[0], a * b * c)
    m, _ = lower("Eltwise", shape3, operation=EltwiseOp.MAX)
    close(m(*xs)[0], np.maximum(np.maximum(a, b), c))
