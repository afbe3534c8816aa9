"""Filter against a numpy transcription of BVLC caffe's filter_layer.cpp, and how netdsl
states its data-dependent top size (Caffe's first Reshape: the whole batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netdsl.layers import TYPES

from .helpers import close, lower, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_indices(selector: np.ndarray) -> list[int]:
    return [i for i in range(selector.shape[0]) if selector.reshape(-1)[i]]


def caffe_forward(x: np.ndarray, indices: list[int]) -> np.ndarray:
    dim = x.size // x.shape[0]
    flat = x.reshape(-1)
    top = [flat[i * dim:(i + 1) * dim] for i in indices]
    return np.array(top).reshape(len(indices), *x.shape[1:])


def caffe_backward(shape: tuple[int, ...], top_diff: np.ndarray, indices: list[int]
                   ) -> np.ndarray:
    dim = int(np.prod(shape[1:]))
    diff, out = top_diff.reshape(-1), np.zeros(int(np.prod(shape)))
    nxt = 0
    for n in range(shape[0]):
        if nxt < len(indices) and n == indices[nxt]:
            out[n * dim:(n + 1) * dim] = diff[nxt * dim:(nxt + 1) * dim]
            nxt += 1
    return out.reshape(shape)


def test_shapes_are_caffes_first_reshape_an_upper_bound() -> None:
    assert "depends on the data" in (TYPES["Filter"].__doc__ or "")
    assert shapes("Filter", ((5, 3, 2), (5, 4), (5, 1)), tops=2) == ((5, 3, 2), (5, 4))
    assert shapes("Filter", ((5, 3), (5,))) == ((5, 3),)


def test_caffe_checks() -> None:
    shape_error("Filter", ((5, 3), (5, 1)), tops=2, match="one top per bottom", field="top")
    shape_error("Filter", ((5, 3), (5, 2)), match="selector")
    shape_error("Filter", ((4, 3), (5, 1)), match="does not have the selector's 5 items")


def test_forward_and_backward_match_caffe() -> None:
    m, _ = lower("Filter", ((5, 3, 2), (5, 4), (5, 1)), tops=2)
    selector = np.array([[0.0], [2.0], [0.0], [-1.0], [0.5]])
    a = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    ya, yb = m(a, b, torch.from_numpy(selector))
    idx = caffe_indices(selector)
    assert idx == [1, 3, 4] and ya.shape[0] == yb.shape[0] == 3
    close(ya, caffe_forward(a.detach().numpy(), idx), 0)
    close(yb, caffe_forward(b.detach().numpy(), idx), 0)
    da, db = torch.randn_like(ya), torch.randn_like(yb)
    ga, gb = torch.autograd.grad((ya, yb), (a, b), (da, db))
    close(ga, caffe_backward((5, 3, 2), da.numpy(), idx), 0)
    close(gb, caffe_backward((5, 4), db.numpy(), idx), 0)


def test_nothing_selected_gives_an_empty_batch() -> None:
    m, _ = lower("Filter", ((3, 2), (3,)))
    (y,) = m(torch.randn(3, 2), torch.zeros(3))
    assert tuple(y.shape) == (0, 2)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 4 dim: 3 }
input: "keep" input_shape { dim: 4 dim: 1 }
layer { name: "f" type: "Filter" bottom: "data" bottom: "keep" top: "f" }
""")
    assert 'type: Filter  bottom: ["data", "keep"]' in net and '"Filter"' in back
