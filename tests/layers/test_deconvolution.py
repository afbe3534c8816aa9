from __future__ import annotations

import torch

from netdsl.layers import REGISTRY

from .helpers import kind, lower, params, rand, same_as_torch, shape_error, shapes


def test_names_and_output_size() -> None:
    assert REGISTRY["DECONVOLUTION"] is REGISTRY["Deconvolution"]
    # (in - 1) * stride - 2 * pad + dilation * (kernel - 1) + 1
    assert shapes("Deconvolution", ((1, 21, 4, 4),), num_output=21, kernel_size=(4,),
                  stride=(2,), pad=(1,)) == ((1, 21, 8, 8),)  # (4-1)*2 - 2 + 4
    assert shapes("Deconvolution", ((1, 2, 5, 5),), num_output=3, kernel_size=(3,),
                  dilation=(2,)) == ((1, 3, 9, 9),)  # 4 + 2*2 + 1
    assert shapes("Deconvolution", ((1, 2, 5, 7),), num_output=3, kernel_h=2, kernel_w=3,
                  stride_h=3, stride_w=1) == ((1, 3, 14, 9),)
    assert shapes("Deconvolution", ((1, 21, 16, 16),), num_output=21, kernel_size=(64,),
                  stride=(32,)) == ((1, 21, 544, 544),)  # FCN-32s upscore


def test_param_shapes_and_macs() -> None:
    k = kind("Deconvolution")
    p = params("Deconvolution", num_output=6, kernel_size=(3,), group=2)
    assert k.param_shapes(p, ((1, 4, 5, 5),)) == {"weight": (4, 3, 3, 3), "bias": (6,)}
    p = params("Deconvolution", num_output=6, kernel_size=(3,), bias_term=False)
    assert k.param_shapes(p, ((1, 4, 5, 5),)) == {"weight": (4, 6, 3, 3)}
    # every input value scatters num_output / group * kh * kw products
    assert k.macs(p, ((2, 4, 5, 5),), ((2, 6, 7, 7),)) == 2 * 4 * 25 * 6 * 9


def test_checks() -> None:
    shape_error("Deconvolution", ((1, 3, 5, 5),), match="not divisible by group",
                field="group", num_output=4, kernel_size=(3,), group=2)
    shape_error("Deconvolution", ((1, 4, 5, 5),), match="num_output 3",
                field="num_output", num_output=3, kernel_size=(3,), group=2)
    shape_error("Deconvolution", ((1, 4, 1, 1),), match="side -1", field="pad",
                num_output=3, kernel_size=(1,), pad=(1,))
    shape_error("Deconvolution", ((1, 4, 5, 5),), match="needs kernel", num_output=3)


def test_lowering_matches_conv_transpose_with_groups() -> None:
    x = rand(2, 4, 5, 5)
    m, tops = lower("Deconvolution", ((2, 4, 5, 5),), num_output=6, kernel_size=(3,),
                    stride=(2,), pad=(1,), group=2)
    ref = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert same_as_torch(m, ref, x) == tops[0] == (2, 6, 9, 9)
