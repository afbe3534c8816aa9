"""Embed against a numpy transcription of BVLC caffe's embed_layer.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netdsl.layers.base import FillerType

from .helpers import close, kind, lower, params, params_from_text, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    k, n = weight.shape
    flat = x.reshape(-1)
    top = np.zeros((flat.size, n))
    for i in range(flat.size):
        top[i] = weight[int(flat[i])]  # static_cast<int>
    if bias is not None:
        top += np.ones((flat.size, 1)) @ bias.reshape(1, n)  # gemm with bias_multiplier
    return top.reshape(*x.shape, n)


def caffe_backward(x: np.ndarray, top_diff: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    n = top_diff.shape[-1]
    flat, diff = x.reshape(-1), top_diff.reshape(-1, n)
    weight_diff = np.zeros((k, n))
    for i in range(flat.size):
        weight_diff[int(flat[i])] += diff[i]
    bias_diff = diff.T @ np.ones(flat.size)  # gemv (transposed) with bias_multiplier
    return weight_diff, bias_diff


def test_fields_shapes_and_blobs() -> None:
    p = params_from_text("Embed", "embed_param { num_output: 8 input_dim: 100 bias_term: false "
                         "weight_filler { type: 'uniform' min: -0.1 max: 0.1 } }")
    assert (p.num_output, p.input_dim, p.bias_term) == (8, 100, False)
    assert p.weight_filler.type is FillerType.uniform
    assert shapes("Embed", ((5, 7),), num_output=8, input_dim=100) == ((5, 7, 8),)
    k = kind("Embed")
    assert k.param_shapes(params("Embed", num_output=8, input_dim=100), ((5, 7),)) == {
        "weight": (100, 8), "bias": (8,)}
    assert k.legacy_blob_axes == (2, 1)


def test_caffe_checks() -> None:
    shape_error("Embed", ((5,),), match="num_output must be positive", field="num_output",
                num_output=0, input_dim=3)
    shape_error("Embed", ((5,),), match="input_dim must be positive", field="input_dim",
                num_output=3, input_dim=0)


def test_forward_and_backward_match_caffe() -> None:
    m, tops = lower("Embed", ((4, 3),), num_output=5, input_dim=6)
    m.kernel.double()
    x = torch.tensor([[0.0, 5.0, 2.0], [2.0, 2.0, 1.0], [3.9, 0.0, 4.0], [5.0, 1.0, 1.0]],
                     dtype=torch.float64, requires_grad=True)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0]
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    close(y, caffe_forward(x.detach().numpy(), w, b), 1e-12)
    top_diff = torch.randn(tops[0], dtype=torch.float64)
    gw, gb = torch.autograd.grad(y, (m.weight, m.bias), top_diff)
    want_w, want_b = caffe_backward(x.detach().numpy(), top_diff.numpy(), 6)
    close(gw, want_w, 1e-12)
    close(gb, want_b, 1e-12)
    assert torch.autograd.grad(y, x, top_diff, allow_unused=True)[0] is None  # no input grad


def test_no_bias() -> None:
    m, _ = lower("Embed", ((3,),), num_output=2, input_dim=4, bias_term=False)
    assert m.bias is None
    (y,) = m(torch.tensor([3.0, 0.0, 3.0]))
    close(y, m.weight.detach().numpy()[[3, 0, 3]], 0)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "words" input_shape { dim: 2 dim: 7 }
layer { name: "e" type: "Embed" bottom: "words" top: "e"
        embed_param { num_output: 16 input_dim: 1000 weight_filler { type: "xavier" } } }
""")
    assert "num_output: 16  input_dim: 1000" in net and "weight_filler: xavier()" in net
    assert "embed_param {" in back and "input_dim: 1000" in back
