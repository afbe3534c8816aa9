"""BatchReindex against a numpy transcription of BVLC caffe's batch_reindex_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .helpers import close, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, permut: np.ndarray) -> np.ndarray:
    inner = x.size // x.shape[0]
    flat, out = x.reshape(-1), np.zeros(len(permut) * inner)
    for index in range(out.size):
        n = index // inner
        out[index] = flat[int(permut[n]) * inner + index % inner]
    return out.reshape(len(permut), *x.shape[1:])


def caffe_backward(shape: tuple[int, ...], top_diff: np.ndarray, permut: np.ndarray
                   ) -> np.ndarray:
    inner = int(np.prod(shape[1:]))
    diff, out = top_diff.reshape(-1), np.zeros(int(np.prod(shape)))
    for index in range(diff.size):
        n = index // inner
        out[int(permut[n]) * inner + index % inner] += diff[index]
    return out.reshape(shape)


def test_shape_rule_and_check() -> None:
    assert shapes("BatchReindex", ((4, 3, 2), (6,))) == ((6, 3, 2),)
    assert shapes("BatchReindex", ((4, 3, 2), (0,))) == ((0, 3, 2),)
    shape_error("BatchReindex", ((4, 3), (6, 1)), match="1-D blob")


def test_forward_and_backward_match_caffe() -> None:
    permut = np.array([2.0, 0.0, 2.0, 3.0, 1.0, 2.0])  # repeats add up in the gradient
    x = torch.randn(4, 3, 2, dtype=torch.float64)
    y, top_diff, grad = run_backward("BatchReindex", x, torch.from_numpy(permut))
    close(y, caffe_forward(x.numpy(), permut), 0)
    close(grad, caffe_backward((4, 3, 2), top_diff.numpy(), permut), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 4 dim: 3 }
input: "idx" input_shape { dim: 4 }
layer { name: "r" type: "BatchReindex" bottom: "data" bottom: "idx" top: "r" }
""")
    assert 'type: BatchReindex  bottom: ["data", "idx"]' in net and '"BatchReindex"' in back
