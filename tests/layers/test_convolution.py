"""Lowering of the Convolution type (its shape rule has its own tests elsewhere)."""

from __future__ import annotations

import pytest
import torch

from netdsl.diagnostics import collect_warnings

from .helpers import close, field_line, lower, rand, same_as_torch, shape_error, shapes


def test_alexnet_conv1_shape() -> None:
    assert shapes("Convolution", ((10, 3, 227, 227),), num_output=96, kernel_size=(11,),
                  stride=(4,)) == ((10, 96, 55, 55),)


def test_caffe_setup_checks() -> None:
    # BaseConvolutionLayer's checks, shared with Deconvolution: a top per bottom, and a
    # spatial axis to slide over (a 0-D convolution has no lowering).
    shape_error("Convolution", ((1, 2, 5, 5),), tops=2, match="one top per bottom",
                field="top", num_output=3, kernel_size=(3,))
    shape_error("Convolution", ((1, 2),), match="channels and spatial axes",
                num_output=3, kernel_size=(3,))
    shape_error("Convolution", ((1, 2, 5, 5), (1, 2, 5, 4)), tops=2, match="bottom 1 is",
                field="bottom", num_output=3, kernel_size=(3,))


def test_group_2_matches_nn_conv2d() -> None:
    x = rand(2, 4, 9, 9)
    m, tops = lower("Convolution", ((2, 4, 9, 9),), num_output=6, kernel_size=(3,), pad=(1,),
                    stride=(2,), group=2)
    assert tuple(m.weight.shape) == (6, 2, 3, 3)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert same_as_torch(m, ref, x) == tops[0] == (2, 6, 5, 5)


def test_rectangular_dilated_no_bias() -> None:
    x = rand(1, 3, 12, 10)
    m, tops = lower("Convolution", ((1, 3, 12, 10),), num_output=2, kernel_h=3, kernel_w=2,
                    pad_h=2, pad_w=0, dilation=(2,), bias_term=False)
    assert m.bias is None
    (y,) = m(x)
    ref = torch.nn.functional.conv2d(x, m.weight, None, 1, (2, 0), 2)
    assert tuple(y.shape) == tops[0]
    close(y, ref, 1e-5)


def test_several_bottoms_share_the_weights() -> None:
    a, b = rand(1, 2, 5, 5, seed=1), rand(1, 2, 5, 5, seed=2)
    m, tops = lower("Convolution", ((1, 2, 5, 5), (1, 2, 5, 5)), tops=2, num_output=3,
                    kernel_size=(3,))
    ya, yb = m(a, b)
    close(ya, torch.nn.functional.conv2d(a, m.weight, m.bias), 1e-5)
    close(yb, torch.nn.functional.conv2d(b, m.weight, m.bias), 1e-5)


def test_one_spatial_axis() -> None:
    x = rand(2, 3, 11)
    m, tops = lower("Convolution", ((2, 3, 11),), num_output=4, kernel_size=(3,), stride=(2,))
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 4, 5)
    close(y, torch.nn.functional.conv1d(x, m.weight, m.bias, 2), 1e-5)


def _caffe_conv_side(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    """ConvolutionLayer::compute_output_shape (BVLC caffe src/caffe/layers/conv_layer.cpp)
    with C's int division, which truncates toward zero (``int(a / b)``)."""
    extent = d * (k - 1) + 1
    return int((size + 2 * p - extent) / s) + 1


@pytest.mark.parametrize("size, k, s, p, d", [
    (1, 2, 2, 0, 1),  # (1 - 2) / 2 truncates to 0: side 1 (floor division would give 0)
    (1, 4, 2, 0, 1),  # (1 - 4) / 2 truncates to -1: side 0 (floor: -1, an error)
    (1, 3, 2, 0, 1),  # -2 / 2 + 1 = 0
    (1, 3, 1, 0, 1),  # -2 + 1 = -1: Caffe stops
    (3, 2, 1, 0, 3),  # dilated extent 4 on 3: -1 / 1 + 1 = 0
    (1, 7, 1, 3, 1),  # OpenPose's 7x7 pad 3 on 1x1 fits: 1
])
def test_a_kernel_larger_than_its_input_is_what_caffe_computes(
        size: int, k: int, s: int, p: int, d: int) -> None:
    caffe = _caffe_conv_side(size, k, s, p, d)
    kw = {"num_output": 4, "kernel_size": (k,), "stride": (s,), "pad": (p,), "dilation": (d,)}
    bottom = ((1, 2, size, size),)
    if caffe < 0:
        err = shape_error("Convolution", bottom, match=f"gives side {caffe}, and Caffe stops",
                          field="kernel_size", **kw)
        assert err.hint is not None and err.hint.startswith("use a smaller kernel")
        return
    with collect_warnings() as ws:
        (top,) = shapes("Convolution", bottom, **kw)
    assert top == (1, 4, max(caffe, 1), max(caffe, 1))
    extent = d * (k - 1) + 1
    if size + 2 * p >= extent:
        assert ws == []
        return
    (w,) = ws
    assert w.span.line == field_line(kw, "kernel_size")
    assert w.message.startswith(f"Convolution 'L': kernel {extent} is larger than the padded "
                                f"input {size + 2 * p} (input {size}, pad {p}); ")
    assert ("gives side 0, an empty blob in Caffe; netdsl goes on with side 1" if caffe == 0
            else f"Caffe computes side {caffe} with its formula") in w.message
