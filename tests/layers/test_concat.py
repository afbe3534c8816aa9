from __future__ import annotations

import torch

from netdsl.layers import REGISTRY

from .helpers import close, lower, params_from_text, rand, shape_error, shapes


def test_names_and_shapes() -> None:
    assert REGISTRY["CONCAT"] is REGISTRY["Concat"]
    assert shapes("Concat", ((2, 3, 5, 5), (2, 4, 5, 5), (2, 1, 5, 5))) == ((2, 8, 5, 5),)
    assert shapes("Concat", ((2, 3, 5), (2, 3, 7)), axis=-1) == ((2, 3, 12),)
    assert shapes("Concat", ((2, 3), (6, 3)), axis=0) == ((8, 3),)
    assert shapes("Concat", ((2, 3, 4),)) == ((2, 3, 4),)


def test_legacy_concat_dim() -> None:
    assert shapes("Concat", ((2, 3, 4), (2, 3, 1)), concat_dim=2) == ((2, 3, 5),)
    p = params_from_text("Concat", "concat_param { concat_dim: 0 }")
    assert p.concat_dim == 0 and p.axis == 1
    shape_error("Concat", ((2, 3), (2, 3)), match="not both", field="concat_dim",
                axis=1, concat_dim=0)
    shape_error("Concat", ((2, 3), (2, 3)), match="out of range", field="concat_dim",
                concat_dim=2)


def test_mismatch_names_both_shapes_and_the_bottom() -> None:
    err = shape_error("Concat", ((2, 3, 5, 5), (2, 4, 5, 5), (2, 4, 6, 5)), field="bottom",
                      axis=1)
    assert "bottom 2 [2, 4, 6, 5]" in err.message and "bottom 0 [2, 3, 5, 5]" in err.message
    assert "axis 2" in err.message
    shape_error("Concat", ((2, 3, 5), (2, 3)), match="bottom 1 .* has 2 axes", field="bottom")


def test_axis_out_of_range() -> None:
    shape_error("Concat", ((2, 3), (2, 3)), match="out of range", field="axis", axis=2)


def test_lowering() -> None:
    a, b = rand(2, 3, 4, seed=1), rand(2, 5, 4, seed=2)
    m, tops = lower("Concat", ((2, 3, 4), (2, 5, 4)))
    (y,) = m(a, b)
    close(y, torch.cat([a, b], 1))
    assert tuple(y.shape) == tops[0]
    m, _ = lower("Concat", ((2, 3, 4), (2, 3, 4)), concat_dim=2)
    assert tuple(m(a, a)[0].shape) == (2, 3, 8)
