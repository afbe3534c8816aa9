"""Lowering of the Convolution type (its shape rule has its own tests elsewhere)."""

from __future__ import annotations

import torch

from .helpers import close, lower, rand, shape_error, shapes


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
    with torch.no_grad():
        ref.weight.copy_(m.weight)
        ref.bias.copy_(m.bias)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 6, 5, 5)
    close(y, ref(x), 1e-4)


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
