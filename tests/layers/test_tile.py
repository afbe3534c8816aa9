"""Tile against a numpy transcription of BVLC caffe's tile_layer.cpp."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import close, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, axis: int, tiles: int) -> np.ndarray:
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis:])
    bottom, top = x.reshape(-1), []
    for i in range(outer):
        for _ in range(tiles):
            top.append(bottom[i * inner:(i + 1) * inner])
    shape = list(x.shape)
    shape[axis] *= tiles
    return np.concatenate(top).reshape(shape)


def caffe_backward(shape: tuple[int, ...], top_diff: np.ndarray, axis: int, tiles: int
                   ) -> np.ndarray:
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis:])
    diff, out = top_diff.reshape(-1), np.zeros(outer * inner)
    for i in range(outer):
        for t in range(tiles):
            out[i * inner:(i + 1) * inner] += diff[(i * tiles + t) * inner:
                                                   (i * tiles + t + 1) * inner]
    return out.reshape(shape)


def test_defaults_and_shapes() -> None:
    p = params_from_text("Tile", "tile_param { tiles: 3 }")
    assert (p.axis, p.tiles) == (1, 3)
    assert shapes("Tile", ((2, 3, 4),), tiles=2) == ((2, 6, 4),)
    assert shapes("Tile", ((2, 3, 4),), axis=-1, tiles=5) == ((2, 3, 20),)


def test_caffe_checks() -> None:
    shape_error("Tile", ((2, 3),), match="needs 'tiles'")
    shape_error("Tile", ((2, 3),), match="must be positive", field="tiles", tiles=0)
    shape_error("Tile", ((2, 3),), match="out of range", field="axis", axis=2, tiles=2)


@pytest.mark.parametrize("axis, tiles", [(0, 2), (1, 3), (2, 1), (3, 4)])
def test_forward_and_backward_match_caffe(axis: int, tiles: int) -> None:
    shape = (2, 3, 4, 5)
    x = torch.randn(shape, dtype=torch.float64)
    y, top_diff, grad = run_backward("Tile", x, axis=axis, tiles=tiles)
    close(y, caffe_forward(x.numpy(), axis, tiles), 0)
    close(grad, caffe_backward(shape, top_diff.numpy(), axis, tiles), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 dim: 4 }
layer { name: "t" type: "Tile" bottom: "data" top: "t" tile_param { axis: 2 tiles: 3 } }
""")
    assert "axis: 2  tiles: 3" in net and "tile_param { axis: 2 tiles: 3 }" in back
