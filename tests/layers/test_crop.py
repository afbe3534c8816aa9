"""Crop against a numpy transcription of BVLC caffe's crop_layer.cpp (crop_copy)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from .helpers import close, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def caffe_offsets(bottom: tuple[int, ...], axis: int, offset: tuple[int, ...]) -> list[int]:
    """CropLayer::Reshape's offset_data: 0 before the axis; one offset for all, or one each."""
    start = axis % len(bottom)
    out = []
    for i in range(len(bottom)):
        off = 0
        if i >= start:
            if len(offset) == 1:
                off = offset[0]
            elif len(offset) > 1:
                off = offset[i - start]
        out.append(off)
    return out


def caffe_forward(bottom: np.ndarray, top_shape: tuple[int, ...], offsets: list[int]
                  ) -> np.ndarray:
    """crop_copy, forward: every row of the last axis copied from the offset position."""
    top = np.zeros(top_shape)
    n = len(top_shape)
    for ind in itertools.product(*(range(d) for d in top_shape[:-1])):
        src = tuple(i + o for i, o in zip(ind, offsets, strict=False))
        top[ind] = bottom[src][offsets[n - 1]: offsets[n - 1] + top_shape[-1]]
    return top


def caffe_backward(bottom_shape: tuple[int, ...], top_diff: np.ndarray, offsets: list[int]
                   ) -> np.ndarray:
    bottom_diff = np.zeros(bottom_shape)
    n = top_diff.ndim
    for ind in itertools.product(*(range(d) for d in top_diff.shape[:-1])):
        dst = tuple(i + o for i, o in zip(ind, offsets, strict=False))
        bottom_diff[dst][offsets[n - 1]: offsets[n - 1] + top_diff.shape[-1]] = top_diff[ind]
    return bottom_diff


def test_defaults() -> None:
    p = params_from_text("Crop", "")
    assert (p.axis, p.offset) == (2, ())
    p = params_from_text("Crop", "crop_param { axis: 1 offset: 3 offset: 4 offset: 5 }")
    assert (p.axis, p.offset) == (1, (3, 4, 5))


def test_shape_rule() -> None:
    # FCN-8s' score_pool4c: score_pool4 (44x44) cut to upscore2's 34x34 from offset 5
    assert shapes("Crop", ((1, 21, 44, 44), (1, 21, 34, 34)), offset=(5,)) == ((1, 21, 34, 34),)
    # axes before `axis` keep bottom 0's sizes; only the reference's later axes count
    assert shapes("Crop", ((2, 21, 44, 44), (1, 3, 30, 31))) == ((2, 21, 30, 31),)
    assert shapes("Crop", ((2, 21, 44, 44), (1, 3, 30, 31)), axis=-1) == ((2, 21, 44, 31),)
    assert shapes("Crop", ((4, 5, 6), (2, 3, 4)), axis=0, offset=(1, 2, 0)) == ((2, 3, 4),)
    # a reference with more axes: only the bottom's number of axes is read
    assert shapes("Crop", ((4, 5), (4, 2, 7)), axis=1) == ((4, 2),)


def test_caffe_checks() -> None:
    b = ((1, 3, 10, 10), (1, 3, 6, 6))
    shape_error("Crop", b, match="3 offsets for the 2 axes", field="offset", offset=(1, 2, 3))
    shape_error("Crop", b, match="axis 3 is out of bounds: size 6 from offset 5",
                field="offset", offset=(0, 5))
    shape_error("Crop", b, match="out of range", field="axis", axis=4)
    shape_error("Crop", b, match="negative", field="offset", offset=(-1,))
    shape_error("Crop", ((1, 3, 10, 10), (1, 3, 6)), match="fewer axes")


@pytest.mark.parametrize("axis, offset", [(2, ()), (2, (1,)), (1, (1, 2, 0)), (-1, (3,)),
                                          (0, (1, 0, 2, 1))])
def test_forward_and_backward_match_caffe(axis: int, offset: tuple[int, ...]) -> None:
    data_shape, ref_shape = (3, 4, 7, 8), (2, 2, 5, 4)
    x = torch.randn(data_shape, dtype=torch.float64)
    ref = torch.randn(ref_shape, dtype=torch.float64)
    y, top_diff, grad = run_backward("Crop", x, ref, axis=axis, offset=offset)
    offsets = caffe_offsets(data_shape, axis, offset)
    close(y, caffe_forward(x.numpy(), tuple(y.shape), offsets), 0)
    close(grad, caffe_backward(data_shape, top_diff.numpy(), offsets), 0)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 1 dim: 3 dim: 20 dim: 20 }
input: "score" input_shape { dim: 1 dim: 5 dim: 30 dim: 30 }
layer { name: "c" type: "Crop" bottom: "score" bottom: "data" top: "c"
        crop_param { axis: 2 offset: 5 } }
""")
    assert 'bottom: ["score", "data"]  offset: 5' in net
    assert "crop_param { offset: 5 }" in back  # axis 2 is the default
