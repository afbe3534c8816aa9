from __future__ import annotations

from netdsl.layers import REGISTRY

from .helpers import close, lower, rand, shape_error, shapes


def test_names_and_shapes() -> None:
    assert REGISTRY["FLATTEN"] is REGISTRY["Flatten"]
    assert shapes("Flatten", ((2, 3, 4, 5),)) == ((2, 60),)
    assert shapes("Flatten", ((2, 3, 4, 5),), axis=1, end_axis=2) == ((2, 12, 5),)
    assert shapes("Flatten", ((2, 3, 4, 5),), axis=0) == ((120,),)
    assert shapes("Flatten", ((2, 3, 4, 5),), axis=-2) == ((2, 3, 20),)
    assert shapes("Flatten", ((2, 3, 4, 5),), axis=2, end_axis=2) == ((2, 3, 4, 5),)


def test_empty_range_inserts_a_unit_axis() -> None:
    # Caffe: count(start, end + 1) with end + 1 == start is 1 -> a new axis of size 1.
    assert shapes("Flatten", ((2, 3, 4),), axis=1, end_axis=0) == ((2, 1, 3, 4),)


def test_checks() -> None:
    shape_error("Flatten", ((2, 3, 4),), match="comes before", field="end_axis",
                axis=2, end_axis=0)
    shape_error("Flatten", ((2, 3),), match="out of range", field="axis", axis=2)
    shape_error("Flatten", ((2, 3),), match="out of range", field="end_axis", end_axis=-3)


def test_lowering() -> None:
    x = rand(2, 3, 4, 5)
    m, tops = lower("Flatten", ((2, 3, 4, 5),), axis=1, end_axis=2)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 12, 5)
    close(y, x.reshape(2, 12, 5))
    m, _ = lower("Flatten", ((2, 3, 4),), axis=1, end_axis=0)
    assert tuple(m(rand(2, 3, 4))[0].shape) == (2, 1, 3, 4)
    m, _ = lower("Flatten", ((2, 3, 4, 5),))
    assert tuple(m(rand(7, 3, 4, 5))[0].shape) == (7, 60)  # any batch size
