"""ArgMax against a numpy transcription of BVLC caffe's argmax_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import REGISTRY

from .helpers import close, lower, params_from_text, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, top_shape: tuple[int, ...], top_k: int, out_max_val: bool,
                  axis: int | None) -> np.ndarray:
    bottom, top = x.reshape(-1), np.zeros(int(np.prod(top_shape)))
    if axis is not None:
        dim = x.shape[axis]
        axis_dist = int(np.prod(x.shape[axis:])) // dim
    else:
        dim, axis_dist = int(np.prod(x.shape[1:])), 1
    for i in range(x.size // dim):
        pairs = [(bottom[(i // axis_dist * dim + j) * axis_dist + i % axis_dist], j)
                 for j in range(dim)]
        pairs.sort(reverse=True)  # std::partial_sort with std::greater<pair>
        for j in range(top_k):
            where = (i // axis_dist * top_k + j) * axis_dist + i % axis_dist
            if out_max_val and axis is not None:
                top[where] = pairs[j][0]
            elif out_max_val:
                top[2 * i * top_k + j] = pairs[j][1]
                top[2 * i * top_k + top_k + j] = pairs[j][0]
            else:
                top[where] = pairs[j][1]
    return top.reshape(top_shape)


def test_names_and_defaults() -> None:
    assert REGISTRY["ARGMAX"] is REGISTRY["ArgMax"]
    p = params_from_text("ArgMax", "argmax_param { top_k: 2 }")
    assert (p.out_max_val, p.top_k, p.axis) == (False, 2, None)


def test_shape_rule() -> None:
    assert shapes("ArgMax", ((10, 1000),)) == ((10, 1, 1),)
    assert shapes("ArgMax", ((10, 5, 4, 4),), top_k=3, out_max_val=True) == ((10, 2, 3, 1),)
    assert shapes("ArgMax", ((2, 3, 4, 5, 6),), top_k=2) == ((2, 1, 2, 1, 1),)
    assert shapes("ArgMax", ((10, 5, 4, 4),), axis=1, top_k=2) == ((10, 2, 4, 4),)
    assert shapes("ArgMax", ((10, 5, 4, 4),), axis=-1, out_max_val=True) == ((10, 5, 4, 1),)


def test_caffe_checks() -> None:
    shape_error("ArgMax", ((2, 5),), match="at least 1", field="top_k", top_k=0)
    shape_error("ArgMax", ((2, 5),), match="more than the 5 entries", field="top_k", top_k=6)
    shape_error("ArgMax", ((2, 5, 3),), match="more than the 3 entries of axis 2",
                field="top_k", top_k=4, axis=2)
    shape_error("ArgMax", ((2, 5),), match="out of range", field="axis", axis=2)


@pytest.mark.parametrize("shape, top_k, out_max_val, axis", [
    ((3, 7), 1, False, None), ((3, 4, 2, 2), 3, True, None), ((3, 4, 2, 2), 2, False, None),
    ((3, 5, 4), 2, False, 1), ((3, 5, 4), 3, True, 2), ((6, 5), 2, True, 0)])
def test_forward_matches_caffe(shape: tuple[int, ...], top_k: int, out_max_val: bool,
                               axis: int | None) -> None:
    m, tops = lower("ArgMax", (shape,), top_k=top_k, out_max_val=out_max_val, axis=axis)
    # few distinct values: many ties, which Caffe's pair sort gives to the larger index
    x = torch.randint(0, 3, shape).double().requires_grad_(True)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] and not y.requires_grad  # Caffe: no backward
    ax = None if axis is None else axis % len(shape)
    close(y, caffe_forward(x.detach().numpy(), tops[0], top_k, out_max_val, ax), 0)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 10 }
layers { name: "a" type: ARGMAX bottom: "data" top: "a" argmax_param { top_k: 3 axis: 1 } }
""")
    assert "type: ArgMax  top_k: 3  axis: 1" in net
    assert "argmax_param { top_k: 3 axis: 1 }" in back
