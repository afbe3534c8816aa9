"""Im2col against a numpy transcription of BVLC caffe's im2col.cpp (im2col_cpu and
col2im_cpu, here for any number of spatial axes as im2col_nd_cpu does it)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.diagnostics import collect_warnings
from netdsl.layers import REGISTRY

from .helpers import close, field_line, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def _positions(im_shape: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
               pad: tuple[int, ...], dilation: tuple[int, ...]):
    """(column row, output position, input position or None) in Caffe's loop order:
    channel, kernel offsets, output positions (each row-major)."""
    c, spatial = im_shape[0], im_shape[1:]
    out = [(s + 2 * p - (d * (k - 1) + 1)) // st + 1
           for s, k, st, p, d in zip(spatial, kernel, stride, pad, dilation, strict=True)]
    row = 0
    for ch in range(c):
        for koff in itertools.product(*(range(k) for k in kernel)):
            for opos in itertools.product(*(range(o) for o in out)):
                ipos = tuple(-p + o * st + k * d
                             for o, k, st, p, d in zip(opos, koff, stride, pad, dilation,
                                                       strict=True))
                inside = all(0 <= i < s for i, s in zip(ipos, spatial, strict=True))
                yield row, opos, (ch, *ipos) if inside else None
            row += 1


def caffe_im2col(im: np.ndarray, *geometry: tuple[int, ...]) -> np.ndarray:
    rows = []
    cur: list[float] = []
    last = 0
    for row, _, src in _positions(im.shape, *geometry):
        if row != last:
            rows.append(cur)
            cur, last = [], row
        cur.append(0.0 if src is None else im[src])
    rows.append(cur)
    return np.array(rows)


def caffe_col2im(col: np.ndarray, im_shape: tuple[int, ...], *geometry: tuple[int, ...]
                 ) -> np.ndarray:
    im = np.zeros(im_shape)
    flat = col.reshape(col.shape[0], -1)
    counters: dict[int, int] = {}
    for row, _, src in _positions(im_shape, *geometry):
        j = counters.get(row, 0)
        counters[row] = j + 1
        if src is not None:
            im[src] += flat[row, j]
    return im


def test_names_and_fields() -> None:
    assert REGISTRY["IM2COL"] is REGISTRY["Im2col"]
    p = params_from_text("Im2col", "convolution_param { kernel_size: 3 stride: 2 pad: 1 }")
    assert (p.kernel_size, p.stride, p.pad, p.num_output) == ((3,), (2,), (1,), 0)


def test_shape_rule() -> None:
    assert shapes("Im2col", ((2, 3, 10, 10),), kernel_size=(3,)) == ((2, 27, 8, 8),)
    assert shapes("Im2col", ((2, 3, 10, 9),), kernel_h=3, kernel_w=2, stride=(2,),
                  pad_h=1, pad_w=0) == ((2, 18, 5, 4),)
    assert shapes("Im2col", ((2, 3, 10, 10),), kernel_size=(3,), dilation=(2,)) == (
        (2, 27, 6, 6),)
    assert shapes("Im2col", ((2, 3, 9),), kernel_size=(4,), stride=(5,)) == ((2, 12, 2),)
    assert shapes("Im2col", ((2, 5, 3, 6, 6),), kernel_size=(2, 3), axis=2) == (
        (2, 5, 18, 5, 4),)


def test_caffe_checks() -> None:
    shape_error("Im2col", ((2, 3, 8, 8),), match="needs kernel")
    shape_error("Im2col", ((2, 3),), match="spatial axis", field="bottom", kernel_size=(1,))
    shape_error("Im2col", ((2, 3, 8, 8),), match="kernel_size must be at least 1",
                field="kernel_size", kernel_size=(0,))
    shape_error("Im2col", ((2, 3, 8, 8),), match="2 values for 3 spatial axes",
                kernel_size=(2, 2), axis=0)
    # (4 - 7) / 1 + 1 = -2: Blob::Reshape's CHECK_GE(side, 0) stops Caffe
    shape_error("Im2col", ((2, 3, 4, 4),), match="gives side -2, and Caffe stops",
                field="kernel_size", kernel_size=(7,))


@pytest.mark.parametrize("size, k, s, p, d, side", [
    (4, 5, 2, 0, 1, 1),  # (4 - 5) / 2 truncates to 0 in C++: side 1
    (2, 3, 1, 0, 1, 0),  # (2 - 3) / 1 + 1 = 0: an empty blob in Caffe, 1 here
    (3, 2, 3, 0, 3, 1),  # dilated extent 4 on 3: -1 / 3 + 1 = 1
])
def test_a_window_larger_than_its_input_is_caffes_side_with_a_warning(
        size: int, k: int, s: int, p: int, d: int, side: int) -> None:
    """Im2colLayer::Reshape computes ConvolutionLayer's side and checks no window against
    its input: as for Convolution, a placeholder input loads, with a warning."""
    kw = {"kernel_size": (k,), "stride": (s,), "pad": (p,), "dilation": (d,)}
    with collect_warnings() as ws:
        (top,) = shapes("Im2col", ((2, 3, size, size),), **kw)
    assert top == (2, 3 * k * k, max(side, 1), max(side, 1))
    (w,) = ws  # one warning for both axes of a square window
    extent = d * (k - 1) + 1
    assert w.message.startswith(f"Im2col 'L': kernel {extent} is larger than the padded "
                                f"input {size} (input {size}, pad 0); ")
    assert w.span.line == field_line(kw, "kernel_size")
    assert ("netdsl goes on with side 1" if side == 0
            else f"Caffe computes side {side} with its formula") in w.message


GEOMETRIES = [  # shape, axis, kernel, stride, pad, dilation
    ((2, 3, 7, 6), 1, (3, 3), (1, 1), (0, 0), (1, 1)),
    ((2, 3, 7, 6), 1, (3, 2), (2, 1), (1, 2), (1, 1)),
    ((1, 2, 9, 8), 1, (3, 3), (2, 3), (2, 1), (2, 3)),
    ((2, 2, 10), 1, (3,), (2,), (1,), (2,)),
    ((1, 2, 5, 4, 6), 1, (2, 3, 2), (1, 2, 2), (1, 0, 1), (1, 1, 2)),
    ((2, 2, 3, 6, 5), 2, (2, 2), (2, 1), (1, 0), (1, 1)),
]


@pytest.mark.parametrize("shape, axis, kernel, stride, pad, dilation", GEOMETRIES)
def test_forward_and_backward_match_caffe(shape: tuple[int, ...], axis: int,
                                          kernel: tuple[int, ...], stride: tuple[int, ...],
                                          pad: tuple[int, ...], dilation: tuple[int, ...]
                                          ) -> None:
    x = torch.randn(shape, dtype=torch.float64)
    y, top_diff, grad = run_backward("Im2col", x, axis=axis, kernel_size=kernel,
                                     stride=stride, pad=pad, dilation=dilation)
    geometry = (kernel, stride, pad, dilation)
    outer = shape[:axis]
    xn = x.numpy().reshape(-1, *shape[axis:])
    want = np.stack([caffe_im2col(im, *geometry) for im in xn])
    close(y, want.reshape(y.shape), 0)
    cols = top_diff.numpy().reshape(-1, y.shape[axis], *y.shape[axis + 1:])
    back = np.stack([caffe_col2im(c, shape[axis:], *geometry) for c in cols])
    close(grad, back.reshape(*outer, *shape[axis:]), 1e-12)


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layers { name: "c" type: IM2COL bottom: "data" top: "c"
         convolution_param { kernel_size: 3 stride: 2 } }
""")
    assert "type: Im2col  kernel_size: 3  stride: 2" in net
    assert "convolution_param { kernel_size: 3 stride: 2 }" in back
