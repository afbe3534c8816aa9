"""DepthwiseConvolution (a fork layer) against a numpy transcription of
yonghenglh6/DepthwiseConvolution's depthwise_conv_layer.cu (its ConvForward kernel), which
its CPU path (Caffe's grouped convolution) agrees with when group = channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers import TYPES

from .helpers import close, kind, lower, params, shape_error, shapes
from .roundtrip import convert_both_ways


def fork_gpu_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                     kernel: int, stride: int, pad: int) -> np.ndarray:
    num, channels, height, width = x.shape
    conved_h = (height + 2 * pad - kernel) // stride + 1
    conved_w = (width + 2 * pad - kernel) // stride + 1
    top = np.zeros((num, channels, conved_h, conved_w))
    for index in range(top.size):
        pw = index % conved_w
        ph = (index // conved_w) % conved_h
        c = (index // conved_w // conved_h) % channels
        n = index // conved_w // conved_h // channels
        hstart, wstart = ph * stride - pad, pw * stride - pad
        hend, wend = min(hstart + kernel, height + pad), min(wstart + kernel, width + pad)
        hstart, wstart = max(hstart, 0), max(wstart, 0)
        hend, wend = min(hend, height), min(wend, width)
        khstart = kernel - hend if hend < kernel else 0
        kwstart = kernel - wend if wend < kernel else 0
        total = 0.0
        for h in range(hstart, hend):
            for w in range(wstart, wend):
                total += x[n, c, h, w] * weight[c, 0, khstart + h - hstart, kwstart + w - wstart]
        if bias is not None:
            total += bias[c]
        top[n, c, ph, pw] = total
    return top


def test_a_fork_that_needs_group_equal_to_the_channels() -> None:
    k = TYPES["DepthwiseConvolution"]
    assert "fork: MobileNet's Caffe; not in BVLC" in k.doc and k.caffe_names == ()
    assert shapes("DepthwiseConvolution", ((1, 32, 112, 112),), num_output=32, group=32,
                  kernel_size=(3,), pad=(1,)) == ((1, 32, 112, 112),)
    p = params("DepthwiseConvolution", num_output=32, group=32, kernel_size=(3,))
    assert kind("DepthwiseConvolution").param_shapes(p, ((1, 32, 9, 9),)) == {
        "weight": (32, 1, 3, 3), "bias": (32,)}
    shape_error("DepthwiseConvolution", ((1, 32, 9, 9),), match="group 1 differs",
                field="bottom", num_output=32, kernel_size=(3,))
    shape_error("DepthwiseConvolution", ((1, 32, 9, 9),), match="num_output 64 differs",
                field="num_output", num_output=64, group=32, kernel_size=(3,))


@pytest.mark.parametrize("kernel, stride, pad, bias", [(3, 1, 1, False), (3, 2, 1, True),
                                                       (5, 2, 2, True), (3, 1, 0, True)])
def test_forward_matches_the_forks_gpu_kernel(kernel: int, stride: int, pad: int,
                                              bias: bool) -> None:
    shape = (2, 4, 9, 10)
    m, tops = lower("DepthwiseConvolution", (shape,), num_output=4, group=4,
                    kernel_size=(kernel,), stride=(stride,), pad=(pad,), bias_term=bias)
    m.kernel.double()
    x = torch.randn(shape, dtype=torch.float64)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0]
    b = m.bias.detach().numpy() if bias else None
    want = fork_gpu_forward(x.numpy(), m.weight.detach().numpy(), b, kernel, stride, pad)
    close(y, want, 1e-12)
    ref = torch.nn.functional.conv2d(x, m.weight, m.bias, stride, pad, 1, 4)  # the CPU path
    close(y, ref, 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 1 dim: 8 dim: 8 dim: 8 }
layer { name: "dw" type: "DepthwiseConvolution" bottom: "data" top: "dw"
        convolution_param { num_output: 8 group: 8 kernel_size: 3 pad: 1 } }
""")
    assert "type: DepthwiseConvolution" in net and "group: 8" in net
    assert "convolution_param {" in back and '"DepthwiseConvolution"' in back
