"""Lowering of the InnerProduct type."""

from __future__ import annotations

from .helpers import close, kind, lower, np_, params, rand, shapes


def test_shapes_and_blobs() -> None:
    assert shapes("InnerProduct", ((4, 256, 6, 6),), num_output=4096) == ((4, 4096),)
    k = kind("InnerProduct")
    p = params("InnerProduct", num_output=10, transpose=True)
    assert k.param_shapes(p, ((4, 3, 2),)) == {"weight": (6, 10), "bias": (10,)}


def test_lowering_matches_flatten_matmul() -> None:
    x = rand(4, 3, 2, 2)
    m, tops = lower("InnerProduct", ((4, 3, 2, 2),), num_output=5)
    (y,) = m(x)
    w, b = np_(m.weight), np_(m.bias)
    assert w.shape == (5, 12)
    assert tuple(y.shape) == tops[0] == (4, 5)
    close(y, np_(x).reshape(4, -1) @ w.T + b, 1e-5)


def test_transpose_and_axis() -> None:
    x = rand(2, 3, 4)
    m, tops = lower("InnerProduct", ((2, 3, 4),), num_output=5, axis=2, transpose=True,
                    bias_term=False)
    (y,) = m(x)
    assert m.bias is None and tuple(m.weight.shape) == (4, 5)
    assert tuple(y.shape) == tops[0] == (2, 3, 5)
    close(y, np_(x) @ np_(m.weight), 1e-5)
