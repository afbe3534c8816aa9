from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, params_from_text, rand, shape_error, shapes


def test_names_and_shapes() -> None:
    assert REGISTRY["SLICE"] is REGISTRY["Slice"]
    assert shapes("Slice", ((2, 5, 4),), tops=3, slice_point=(1, 3)) == (
        (2, 1, 4), (2, 2, 4), (2, 2, 4))
    assert shapes("Slice", ((2, 6, 4),), tops=3) == ((2, 2, 4),) * 3
    assert shapes("Slice", ((2, 6, 4),), tops=2, axis=-1) == ((2, 6, 2),) * 2
    assert shapes("Slice", ((6, 3),), tops=2, slice_dim=0, slice_point=(4,)) == ((4, 3), (2, 3))


def test_params_from_caffe_text() -> None:
    p = params_from_text("Slice", "slice_param { axis: 1 slice_point: 1 slice_point: 3 }")
    assert p.slice_point == (1, 3)


def test_checks() -> None:
    shape_error("Slice", ((2, 5),), tops=2, match="2 slice points make 3 pieces",
                field="slice_point", slice_point=(1, 3))
    shape_error("Slice", ((2, 5),), tops=3, match="must increase", field="slice_point",
                slice_point=(3, 3))
    shape_error("Slice", ((2, 5),), tops=2, match="must increase", field="slice_point",
                slice_point=(0,))
    shape_error("Slice", ((2, 5),), tops=2, match="nothing for the last top",
                field="slice_point", slice_point=(5,))
    shape_error("Slice", ((2, 5),), tops=2, match="evenly divide", field="top")
    shape_error("Slice", ((2, 5),), tops=2, match="not both", field="slice_dim", axis=0,
                slice_dim=0)
    shape_error("Slice", ((2, 5),), tops=2, match="out of range", field="axis", axis=2)


def test_lowering() -> None:
    x = rand(2, 5, 4)
    m, tops = lower("Slice", ((2, 5, 4),), tops=3, slice_point=(1, 3))
    ys = m(x)
    assert tuple(tuple(y.shape) for y in ys) == tops
    for y, ref in zip(ys, np.split(np_(x), [1, 3], axis=1), strict=True):
        close(y, ref)
    m, _ = lower("Slice", ((2, 6),), tops=3, axis=-1)
    ys = m(rand(9, 6))
    assert [tuple(y.shape) for y in ys] == [(9, 2)] * 3
