"""ConvolutionDepthwise (a fork layer) against a numpy transcription of
farmingyard/caffe-mobilenet's conv_dw_layer.cpp (sp2823's BVLC pull request #5665)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import TYPES

from .helpers import close, kind, lower, params, params_from_text, shape_error, shapes
from .roundtrip import convert_both_ways

Geometry = tuple[int, int, int, int, int, int, int, int]  # kh kw sh sw ph pw dh dw


def _taps(x_shape: tuple[int, ...], top_hw: tuple[int, int], g: Geometry):
    """(n, c, h, w, kh, kw, offset into the bottom) for every tap inside the image, in
    the fork's loop order."""
    num, channels, height, width = x_shape
    kh_, kw_, sh, sw, ph, pw, dh, dw = g
    for n, c, h, w in itertools.product(range(num), range(channels), *map(range, top_hw)):
        for kh, kw in itertools.product(range(kh_), range(kw_)):
            h_in, w_in = -ph + h * sh + kh * dh, -pw + w * sw + kw * dw
            if 0 <= h_in < height and 0 <= w_in < width:
                yield n, c, h, w, kh, kw, (n, c, h_in, w_in)


def fork_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                 top_hw: tuple[int, int], g: Geometry) -> np.ndarray:
    top = np.zeros((x.shape[0], x.shape[1], *top_hw))
    for n, c, h, w, kh, kw, src in _taps(x.shape, top_hw, g):
        top[n, c, h, w] += weight[c, 0, kh, kw] * x[src]
    if bias is not None:
        top += bias.reshape(1, -1, 1, 1)
    return top


def fork_backward(x: np.ndarray, weight: np.ndarray, top_diff: np.ndarray, g: Geometry
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bias_diff = top_diff.sum(axis=(0, 2, 3))
    weight_diff, bottom_diff = np.zeros_like(weight), np.zeros_like(x)
    for n, c, h, w, kh, kw, src in _taps(x.shape, top_diff.shape[2:], g):
        weight_diff[c, 0, kh, kw] += x[src] * top_diff[n, c, h, w]
        bottom_diff[src] += weight[c, 0, kh, kw] * top_diff[n, c, h, w]
    return bottom_diff, weight_diff, bias_diff


def test_a_fork_read_from_convolution_param() -> None:
    k = TYPES["ConvolutionDepthwise"]
    assert "fork: MobileNet's Caffe; not in BVLC" in k.doc
    assert k.caffe_names == () and k.caffe_params == ("convolution_param",)
    p = params_from_text("ConvolutionDepthwise",
                         "convolution_param { num_output: 54 kernel_size: 3 stride: 2 pad: 1 "
                         "bias_term: false weight_filler { type: 'msra' } }")
    assert (p.num_output, p.kernel_size, p.stride, p.pad, p.bias_term) == (54, (3,), (2,), (1,),
                                                                          False)


def test_shapes_blobs_and_macs() -> None:
    # ShuffleNet's resx1_conv2: 54 maps of 56x56, 3x3 stride 2 pad 1
    assert shapes("ConvolutionDepthwise", ((1, 54, 56, 56),), num_output=54, kernel_size=(3,),
                  stride=(2,), pad=(1,)) == ((1, 54, 28, 28),)
    k = kind("ConvolutionDepthwise")
    p = params("ConvolutionDepthwise", num_output=54, kernel_size=(3,), bias_term=False)
    assert k.param_shapes(p, ((1, 54, 28, 28),)) == {"weight": (54, 1, 3, 3)}
    assert k.macs(p, ((1, 54, 28, 28),), ((1, 54, 26, 26),)) == 54 * 26 * 26 * 9
    # group as written (1) or as implied (the channels): the same layer
    assert shapes("ConvolutionDepthwise", ((1, 8, 5, 5),), num_output=8, kernel_size=(3,),
                  group=8) == ((1, 8, 3, 3),)


def test_checks() -> None:
    b = ((1, 8, 5, 5),)
    shape_error("ConvolutionDepthwise", b, match="num_output 16 differs from the 8 input",
                field="num_output", num_output=16, kernel_size=(3,))
    shape_error("ConvolutionDepthwise", b, match="group 2 is neither", field="group",
                num_output=8, kernel_size=(3,), group=2)
    shape_error("ConvolutionDepthwise", ((1, 8, 5),), match="4-D", num_output=8,
                kernel_size=(3,))
    shape_error("ConvolutionDepthwise", b, match="needs kernel", num_output=8)


@pytest.mark.parametrize("kernel, stride, pad, dilation, bias", [
    ((3,), (1,), (1,), (1,), True), ((3,), (2,), (1,), (1,), False),
    ((3, 2), (2, 1), (0, 1), (2, 1), True), ((5,), (3,), (2,), (1,), True)])
def test_forward_and_backward_match_the_fork(kernel: tuple[int, ...], stride: tuple[int, ...],
                                             pad: tuple[int, ...], dilation: tuple[int, ...],
                                             bias: bool) -> None:
    shape = (2, 3, 9, 8)
    m, tops = lower("ConvolutionDepthwise", (shape,), num_output=3, kernel_size=kernel,
                    stride=stride, pad=pad, dilation=dilation, bias_term=bias)
    m.kernel.double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0]
    kh, kw, sh, sw, ph, pw, dh, dw = (v[i % len(v)] for v in (kernel, stride, pad, dilation)
                                      for i in range(2))
    g: Geometry = (kh, kw, sh, sw, ph, pw, dh, dw)
    w = m.weight.detach().numpy()
    b = m.bias.detach().numpy() if bias else None
    close(y, fork_forward(x.detach().numpy(), w, b, tops[0][2:], g), 1e-12)
    top_diff = torch.randn(tops[0], dtype=torch.float64)
    wrt = (x, m.weight, m.bias) if bias else (x, m.weight)
    grads = torch.autograd.grad(y, wrt, top_diff)
    want = fork_backward(x.detach().numpy(), w, top_diff.numpy(), g)
    for got, exp in zip(grads, want, strict=False):
        close(got, exp, 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 1 dim: 6 dim: 8 dim: 8 }
layer { name: "dw" type: "ConvolutionDepthwise" bottom: "data" top: "dw"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 bias_term: false } }
""")
    assert "type: ConvolutionDepthwise" in net and "num_output: 6" in net
    assert "convolution_param {" in back and '"ConvolutionDepthwise"' in back
