from __future__ import annotations

import pytest

from .helpers import close, lower, params_from_text, rand, shape_error, shapes


@pytest.mark.parametrize("dims", [(2, 2, 4), (0, 2, 4), (0, 2, -1), (0, -1, 4)])
def test_caffe_proto_examples_2x8_to_2x2x4(dims: tuple[int, ...]) -> None:
    assert shapes("Reshape", ((2, 8),), shape=dims) == ((2, 2, 4),)


def test_axis_and_num_axes() -> None:
    assert shapes("Reshape", ((2, 8),), shape=(2, 4), axis=1) == ((2, 2, 4),)
    assert shapes("Reshape", ((2, 8),), shape=(2, 4), axis=-2) == ((2, 2, 4),)
    assert shapes("Reshape", ((2, 8),), shape=(1, 2), num_axes=1) == ((1, 2, 8),)
    assert shapes("Reshape", ((2, 8),), shape=(1,), num_axes=0) == ((1, 2, 8),)
    assert shapes("Reshape", ((2, 8),), shape=(1,), axis=1, num_axes=0) == ((2, 1, 8),)
    assert shapes("Reshape", ((2, 8),), shape=(1,), axis=-1, num_axes=0) == ((2, 8, 1),)
    assert shapes("Reshape", ((2, 3, 4, 5),), shape=(-1,), axis=1, num_axes=2) == ((2, 12, 5),)
    assert shapes("Reshape", ((2, 3, 4, 5),), shape=(0, -1)) == ((2, 60),)


def test_zero_copies_the_bottom_axis_at_the_same_position() -> None:
    # The 0 at position 1 copies bottom axis 1 (2) even though only axis 0 is replaced:
    # top = [-1, 0] + [2, 2] -> [-1, 2, 2, 2] -> 16 / 8 = 2.
    assert shapes("Reshape", ((4, 2, 2),), shape=(-1, 0), num_axes=1) == ((2, 2, 2, 2),)


def test_checks() -> None:
    shape_error("Reshape", ((2, 8),), match="more than one -1", field="shape", shape=(-1, -1))
    shape_error("Reshape", ((2, 8),), match="no axis 2 to copy", field="shape",
                shape=(2, 2, 0, 2))
    shape_error("Reshape", ((2, 9),), match="not divisible", field="shape", shape=(4, -1))
    shape_error("Reshape", ((2, 8),), match="holds 15 values", field="shape", shape=(3, 5))
    shape_error("Reshape", ((2, 8),), match="axis 3 is out of range", field="axis",
                shape=(16,), axis=3)
    shape_error("Reshape", ((2, 8),), match="axis -4", field="axis", shape=(16,), axis=-4)
    shape_error("Reshape", ((2, 8),), match="num_axes", field="num_axes", shape=(16,),
                num_axes=-2)
    shape_error("Reshape", ((2, 8),), match="past", field="num_axes", shape=(16,), axis=1,
                num_axes=2)
    shape_error("Reshape", ((2, 8),), match="below -1", field="shape", shape=(-2, -8))


def test_params_from_caffe_text() -> None:
    p = params_from_text("Reshape", "reshape_param { shape { dim: 0 dim: -1 dim: 4 } axis: 0 }")
    assert p.shape == (0, -1, 4)


def test_lowering_uses_the_runtime_batch() -> None:
    x = rand(3, 4, 5)
    m, tops = lower("Reshape", ((3, 4, 5),), shape=(0, -1))
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (3, 20)
    close(y, x.reshape(3, 20))
    assert tuple(m(rand(7, 4, 5))[0].shape) == (7, 20)
    m, _ = lower("Reshape", ((4, 2, 2),), shape=(-1, 0), num_axes=1)
    assert tuple(m(rand(4, 2, 2))[0].shape) == (2, 2, 2, 2)
