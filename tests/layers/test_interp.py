"""Interp (fork: DeepLab v2's Caffe, as hszhao/PSPNet ships it: interp_layer.cpp and
util/interp.cpp): the size rules, every CHECK, and the kernel against a numpy
transcription of caffe_cpu_interp2 and caffe_cpu_interp2_backward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from netdsl.layers.base import Follow

from .helpers import close, kind, lower, np_, params_from_text, shape_error, shapes
from .roundtrip import round_trip


def caffe_interp(x: np.ndarray, dy: np.ndarray, out_hw: tuple[int, int], pad_beg: int = 0,
                 pad_end: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """InterpLayer's Forward_cpu / Backward_cpu: caffe_cpu_interp2<Dtype, false> and its
    adjoint, loop for loop, with the C++'s float32 coordinates and Dtype weights."""
    dtype = x.dtype.type
    n, c, big_h, big_w = x.shape
    x1 = y1 = -pad_beg
    height1, width1 = big_h + pad_beg + pad_end, big_w + pad_beg + pad_end
    height2, width2 = out_hw
    data1 = x.reshape(n * c, big_h, big_w)
    diff2 = dy.reshape(n * c, height2, width2)
    data2 = np.zeros((n * c, height2, width2), dtype=x.dtype)
    diff1 = np.zeros_like(data1)
    if height1 == height2 and width1 == width2:
        for h2 in range(height2):
            for w2 in range(width2):
                data2[:, h2, w2] = data1[:, y1 + h2, x1 + w2]
                diff1[:, y1 + h2, x1 + w2] += diff2[:, h2, w2]
        return data2.reshape(n, c, *out_hw), diff1.reshape(x.shape)
    f32 = np.float32
    rheight = f32(height1 - 1) / f32(height2 - 1) if height2 > 1 else f32(0)
    rwidth = f32(width1 - 1) / f32(width2 - 1) if width2 > 1 else f32(0)

    def source(ratio: np.float32, i2: int, size1: int) -> tuple[int, int, Any, Any]:
        """``i1``, ``i1p`` and the two weights of output position ``i2`` on one axis."""
        i1r = f32(ratio * f32(i2))
        i1 = int(i1r)
        i1lambda = dtype(f32(i1r - f32(i1)))
        return i1, 1 if i1 < size1 - 1 else 0, dtype(1.0) - i1lambda, i1lambda

    for h2 in range(height2):
        h1, h1p, h0lambda, h1lambda = source(rheight, h2, height1)
        for w2 in range(width2):
            w1, w1p, w0lambda, w1lambda = source(rwidth, w2, width1)
            r, s = y1 + h1, x1 + w1
            data2[:, h2, w2] = (
                h0lambda * (w0lambda * data1[:, r, s] + w1lambda * data1[:, r, s + w1p])
                + h1lambda * (w0lambda * data1[:, r + h1p, s]
                              + w1lambda * data1[:, r + h1p, s + w1p]))
            d = diff2[:, h2, w2]
            diff1[:, r, s] += h0lambda * w0lambda * d
            diff1[:, r, s + w1p] += h0lambda * w1lambda * d
            diff1[:, r + h1p, s] += h1lambda * w0lambda * d
            diff1[:, r + h1p, s + w1p] += h1lambda * w1lambda * d
    return data2.reshape(n, c, *out_hw), diff1.reshape(x.shape)


def test_fields_and_defaults_from_the_forks_proto() -> None:
    p = params_from_text("Interp", "")
    assert (p.height, p.width, p.zoom_factor, p.shrink_factor) == (None,) * 4
    assert (p.pad_beg, p.pad_end) == (0, 0)
    p = params_from_text("Interp", "interp_param { shrink_factor: 8 pad_beg: 0 pad_end: 0 }")
    assert p.shrink_factor == 8
    k = kind("Interp")
    assert k.blobs == () and k.follow is Follow.CHANNELS


def test_the_papers_sizes() -> None:
    # DeepLab v2 (ResNet-101, 321x321 crops): labels shrunk to the 41x41 score map, and
    # the scores zoomed back by 8 to 321x321
    assert shapes("Interp", ((10, 1, 321, 321),), shrink_factor=8) == ((10, 1, 41, 41),)
    assert shapes("Interp", ((10, 21, 41, 41),), zoom_factor=8) == ((10, 21, 321, 321),)
    # PSPNet (473x473 input, 60x60 features): the pyramid's pooled maps back to 60x60
    assert shapes("Interp", ((1, 512, 1, 1),), height=60, width=60) == ((1, 512, 60, 60),)
    assert shapes("Interp", ((1, 150, 60, 60),), zoom_factor=8) == ((1, 150, 473, 473),)


def test_size_rules_in_caffes_order() -> None:
    b = ((2, 3, 65, 33),)
    assert shapes("Interp", b, shrink_factor=2) == ((2, 3, 33, 17),)
    assert shapes("Interp", b, zoom_factor=3) == ((2, 3, 193, 97),)
    assert shapes("Interp", b, shrink_factor=2, zoom_factor=3) == ((2, 3, 97, 49),)
    # a factor wins over height/width
    assert shapes("Interp", b, shrink_factor=4, height=5, width=5) == ((2, 3, 17, 9),)
    assert shapes("Interp", b, height=7, width=9) == ((2, 3, 7, 9),)
    # the pads crop: 65 - 1 - 2 = 62 rows, 33 - 3 = 30 columns
    assert shapes("Interp", b, shrink_factor=2, pad_beg=-1, pad_end=-2) == ((2, 3, 31, 15),)
    # (num, channels, height, width) from a 2-D bottom; a second bottom gives the size
    assert shapes("Interp", ((4, 5),), zoom_factor=2) == ((4, 5, 1, 1),)
    assert shapes("Interp", ((2, 3, 9, 9), (2, 1, 17, 13))) == ((2, 3, 17, 13),)


def test_checks() -> None:
    b = ((1, 2, 8, 8),)
    shape_error("Interp", b, match="pad_beg must be <= 0", field="pad_beg", pad_beg=1,
                zoom_factor=2)
    shape_error("Interp", b, match="pad_end must be <= 0", field="pad_end", pad_end=1,
                zoom_factor=2)
    shape_error("Interp", b, match="shrink_factor must be positive", field="shrink_factor",
                shrink_factor=0)
    shape_error("Interp", b, match="zoom_factor must be positive", field="zoom_factor",
                zoom_factor=-1, shrink_factor=2)
    shape_error("Interp", b, match="needs an output size")
    shape_error("Interp", b, match="needs an output size", height=4)  # width missing
    shape_error("Interp", b, match="cropped input .* positive", pad_beg=-4, pad_end=-4,
                zoom_factor=2)
    shape_error("Interp", b, match="output size .* must be positive", height=0, width=3)
    shape_error("Interp", ((1, 2, 3, 4, 5),), match="at most 4 axes", zoom_factor=2)


CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 5, 7), {"zoom_factor": 2}),  # 5x7 -> 9x13: every second output on the grid
    ((2, 3, 9, 13), {"shrink_factor": 3}),
    ((1, 2, 7, 5), {"height": 10, "width": 3}),  # ratios that float32 cannot hold exactly
    ((1, 2, 11, 10), {"height": 4, "width": 17, "pad_beg": -1, "pad_end": -2}),
    ((1, 2, 6, 6), {"height": 4, "width": 4, "pad_beg": -1, "pad_end": -1}),  # a crop: copy
    ((2, 2, 5, 4), {"height": 1, "width": 1}),  # one output: the corner
    ((1, 3, 1, 1), {"height": 4, "width": 3}),
    ((1, 1, 33, 33), {"height": 97, "width": 65}),
]


@pytest.mark.parametrize("shape, kw", CASES, ids=[str(kw) for _, kw in CASES])
def test_forward_and_backward_match_caffe(shape: tuple[int, ...], kw: dict[str, Any]) -> None:
    m, tops = lower("Interp", (shape,), **kw)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0]
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(dy)
    pads = {k: kw[k] for k in ("pad_beg", "pad_end") if k in kw}
    ref_top, ref_diff = caffe_interp(np_(x), np_(dy), tops[0][2:], **pads)
    close(y, ref_top, 1e-13)
    assert x.grad is not None
    close(x.grad, ref_diff, 1e-12)


@pytest.mark.parametrize("shape, kw", CASES[:4], ids=[str(kw) for _, kw in CASES[:4]])
def test_float32_forward_is_caffes_to_the_bit(shape: tuple[int, ...], kw: dict[str, Any]
                                              ) -> None:
    m, tops = lower("Interp", (shape,), **kw)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    (y,) = m(x)
    pads = {k: kw[k] for k in ("pad_beg", "pad_end") if k in kw}
    ref, _ = caffe_interp(x.numpy(), np.zeros(tops[0], np.float32), tops[0][2:], **pads)
    assert np.array_equal(y.numpy(), ref)


def test_corners_aligned_like_torch_align_corners() -> None:
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    m, _ = lower("Interp", ((1, 2, 6, 9),), height=11, width=17)
    want = torch.nn.functional.interpolate(x, (11, 17), mode="bilinear", align_corners=True)
    close(m(x)[0], want, 1e-6)  # float32 coordinates in Caffe


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, """name: "n"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 65 dim: 65 } } }
layer { name: "label" type: "Input" top: "label"
        input_param { shape { dim: 1 dim: 1 dim: 321 dim: 321 } } }
layer { name: "zoom" type: "Interp" bottom: "data" top: "zoom" interp_param { zoom_factor: 8 } }
layer { name: "shrink" type: "Interp" bottom: "label" top: "shrink"
        interp_param { shrink_factor: 8 pad_beg: 0 pad_end: -1 } }
layer { name: "fixed" type: "Interp" bottom: "data" top: "fixed"
        interp_param { height: 60 width: 60 } }
""")


def test_second_bottom_gives_only_the_size() -> None:
    m, tops = lower("Interp", ((2, 3, 9, 9), (2, 1, 17, 13)))
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    (y,) = m(x, torch.full((2, 1, 17, 13), float("nan")))
    ref, _ = caffe_interp(np_(x), np.zeros(tops[0]), (17, 13))
    close(y, ref, 1e-13)
