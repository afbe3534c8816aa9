"""ShuffleChannel (a fork layer) against a numpy transcription of farmingyard/ShuffleNet's
shuffle_channel_layer.cpp (Resize_cpu, forward and backward)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import TYPES

from .helpers import close, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def resize_cpu(src: np.ndarray, group_row: int, group_column: int, length: int) -> np.ndarray:
    out = np.zeros_like(src)
    for i in range(group_row):
        for j in range(group_column):
            out[(j * group_row + i) * length:(j * group_row + i + 1) * length] = \
                src[(i * group_column + j) * length:(i * group_column + j + 1) * length]
    return out


def fork_forward(x: np.ndarray, group: int) -> np.ndarray:
    n, c = x.shape[:2]
    sp = x[0, 0].size
    items = [resize_cpu(x[i].reshape(-1), group, c // group, sp) for i in range(n)]
    return np.stack(items).reshape(x.shape)


def fork_backward(top_diff: np.ndarray, group: int) -> np.ndarray:
    n, c = top_diff.shape[:2]
    sp = top_diff[0, 0].size
    items = [resize_cpu(top_diff[i].reshape(-1), c // group, group, sp) for i in range(n)]
    return np.stack(items).reshape(top_diff.shape)


def test_fork_marked_defaults_and_shapes() -> None:
    assert "fork: farmingyard/ShuffleNet" in TYPES["ShuffleChannel"].doc
    assert params_from_text("ShuffleChannel", "").group == 1
    assert params_from_text("ShuffleChannel", "shuffle_channel_param { group: 3 }").group == 3
    assert shapes("ShuffleChannel", ((2, 240, 28, 28),), group=3) == ((2, 240, 28, 28),)
    assert shapes("ShuffleChannel", ((2, 12),), group=3) == ((2, 12, 1, 1),)  # legacy 4-D


def test_fork_checks() -> None:
    shape_error("ShuffleChannel", ((2, 12, 3, 3),), match="greater than 0", field="group",
                group=0)
    shape_error("ShuffleChannel", ((2, 10, 3, 3),), match="not divisible by group 3",
                field="group", group=3)
    shape_error("ShuffleChannel", ((2, 12, 3, 3, 3),), match="needs an", group=3)


@pytest.mark.parametrize("shape, group", [((2, 12, 3, 4), 3), ((2, 12, 3, 4), 4),
                                          ((1, 6, 5, 5), 1), ((3, 8), 2)])
def test_forward_and_backward_match_the_fork(shape: tuple[int, ...], group: int) -> None:
    x = torch.randn(shape, dtype=torch.float64)
    y, top_diff, grad = run_backward("ShuffleChannel", x, group=group)
    x4 = x.numpy().reshape(y.shape)
    close(y, fork_forward(x4, group), 0)
    close(grad, fork_backward(top_diff.numpy(), group).reshape(shape), 0)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 1 dim: 6 dim: 2 dim: 2 }
layer { name: "s" type: "ShuffleChannel" bottom: "data" top: "s"
        shuffle_channel_param { group: 3 } }
""")
    assert "type: ShuffleChannel  group: 3" in net
    assert "shuffle_channel_param { group: 3 }" in back
