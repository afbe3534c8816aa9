"""Permute (SSD's Caffe, weiliu89/caffe, permute_layer.cpp): shapes and the kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers.base import Alias

from .helpers import close, kind, lower, np_, params, params_from_text, rand, shape_error, shapes
from .roundtrip import round_trip


def _walk(shape: tuple[int, ...], order: list[int]) -> list[tuple[int, int]]:
    """permute_layer.cpp's Permute(): (top index, bottom index) pairs via the step tables."""
    n = len(shape)
    top_shape = [shape[o] for o in order]
    old_steps = [int(np.prod(shape[i + 1:])) for i in range(n)]
    new_steps = [int(np.prod(top_shape[i + 1:])) for i in range(n)]
    pairs = []
    for i in range(int(np.prod(top_shape))):
        old_idx, idx = 0, i
        for j in range(n):
            old_idx += (idx // new_steps[j]) * old_steps[order[j]]
            idx %= new_steps[j]
        pairs.append((i, old_idx))
    return pairs


def _forward(x: np.ndarray, order: list[int]) -> np.ndarray:
    out = np.empty(x.size)
    for i, old in _walk(x.shape, order):
        out[i] = x.reshape(-1)[old]
    return out.reshape([x.shape[o] for o in order])


def _backward(top_diff: np.ndarray, shape: tuple[int, ...], order: list[int]) -> np.ndarray:
    """Backward_cpu: the same walk, bottom_diff[old_idx] = top_diff[i]."""
    out = np.empty(top_diff.size)
    for i, old in _walk(shape, order):
        out[old] = top_diff.reshape(-1)[i]
    return out.reshape(shape)


def test_shapes() -> None:
    assert shapes("Permute", ((2, 3, 4, 5),), order=(0, 2, 3, 1)) == ((2, 4, 5, 3),)
    # unnamed axes follow in their old order
    assert shapes("Permute", ((2, 3, 4, 5),), order=(0, 3)) == ((2, 5, 3, 4),)
    assert shapes("Permute", ((2, 3, 4, 5),)) == ((2, 3, 4, 5),)
    assert shapes("Permute", ((6, 7),), order=(1,)) == ((7, 6),)


def test_checks() -> None:
    shape_error("Permute", ((2, 3, 4),), match="not an axis", field="order", order=(0, 3))
    shape_error("Permute", ((2, 3, 4),), match="twice", field="order", order=(1, 1))
    shape_error("Permute", ((2, 3, 4),), match="negative", field="order", order=(-1,))


def test_params_from_caffe_text() -> None:
    p = params_from_text("Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }")
    assert p.order == (0, 2, 3, 1)
    assert kind("Permute").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


@pytest.mark.parametrize("order", [(0, 2, 3, 1), (3, 1), (2, 0, 1, 3)])
def test_kernel_against_reference(order: tuple[int, ...]) -> None:
    import torch

    x = rand(2, 3, 4, 5).double().requires_grad_()
    m, tops = lower("Permute", ((2, 3, 4, 5),), order=order)
    (y,) = m(x)
    full = list(order) + [i for i in range(4) if i not in order]
    close(y, _forward(np_(x), full), 1e-12)
    assert tuple(y.shape) == tops[0] and y.is_contiguous()
    g = torch.randn(y.shape, dtype=torch.float64)
    y.backward(g)
    close(x.grad, _backward(g.numpy(), (2, 3, 4, 5), full), 1e-12)


def test_identity_order_shares_the_input() -> None:
    p = params("Permute", order=(0, 1))
    assert isinstance(kind("Permute").lower(p, ((2, 3),), ((2, 3),)), Alias)


def test_convert_both_ways(tmp_path: Path) -> None:
    text = round_trip(tmp_path, """input: "data" input_shape { dim: 2 dim: 3 dim: 4 dim: 5 }
        layer { name: "perm" type: "Permute" bottom: "data" top: "perm"
                permute_param { order: 0 order: 2 order: 3 order: 1 } }""")
    assert "order: [0, 2, 3, 1]" in text
