"""ROIPooling (Fast R-CNN's Caffe, rbgirshick/caffe-fast-rcnn, roi_pooling_layer.cpp and
.cu): shapes, and forward (Forward_cpu) and backward (ROIPoolBackward, the GPU kernel:
Backward_cpu is NOT_IMPLEMENTED) against numpy transcriptions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from .helpers import close, kind, lower, params_from_text, shape_error, shapes
from .roundtrip import round_trip

FLT_MAX = 3.4028234663852886e38


def _c_round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _forward(x: np.ndarray, rois: np.ndarray, ph_: int, pw_: int, scale: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Forward_cpu: (top, argmax) with argmax an index into the H x W plane, -1 if none."""
    _, c, h, w = x.shape
    r_n = rois.shape[0]
    top = np.full((r_n, c, ph_, pw_), -FLT_MAX)
    arg = np.full((r_n, c, ph_, pw_), -1)
    for n in range(r_n):
        b = int(rois[n, 0])
        sw, sh, ew, eh = (_c_round(v * scale) for v in rois[n, 1:5])
        rh, rw = max(eh - sh + 1, 1), max(ew - sw + 1, 1)
        bh, bw = rh / ph_, rw / pw_
        for ch in range(c):
            for ph in range(ph_):
                for pw in range(pw_):
                    hs = min(max(int(math.floor(ph * bh)) + sh, 0), h)
                    he = min(max(int(math.ceil((ph + 1) * bh)) + sh, 0), h)
                    ws = min(max(int(math.floor(pw * bw)) + sw, 0), w)
                    we = min(max(int(math.ceil((pw + 1) * bw)) + sw, 0), w)
                    if he <= hs or we <= ws:
                        top[n, ch, ph, pw], arg[n, ch, ph, pw] = 0, -1
                    for hh in range(hs, he):
                        for ww in range(ws, we):
                            if x[b, ch, hh, ww] > top[n, ch, ph, pw]:
                                top[n, ch, ph, pw] = x[b, ch, hh, ww]
                                arg[n, ch, ph, pw] = hh * w + ww
    return top, arg


def _backward(x_shape: tuple[int, ...], rois: np.ndarray, top_diff: np.ndarray,
              arg: np.ndarray, ph_: int, pw_: int, scale: float) -> np.ndarray:
    """ROIPoolBackward: each bottom element sums the top diffs whose argmax it is, over
    the ROIs of its image that contain it."""
    n_, c, h, w = x_shape
    out = np.zeros(x_shape)
    for n in range(n_):
        for ch in range(c):
            for hh in range(h):
                for ww in range(w):
                    g = 0.0
                    for r in range(rois.shape[0]):
                        if int(rois[r, 0]) != n:
                            continue
                        sw, sh, ew, eh = (_c_round(v * scale) for v in rois[r, 1:5])
                        if not (sw <= ww <= ew and sh <= hh <= eh):
                            continue
                        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
                        bh, bw = rh / ph_, rw / pw_
                        phs = min(max(math.floor((hh - sh) / bh), 0), ph_)
                        phe = min(max(math.ceil((hh - sh + 1) / bh), 0), ph_)
                        pws = min(max(math.floor((ww - sw) / bw), 0), pw_)
                        pwe = min(max(math.ceil((ww - sw + 1) / bw), 0), pw_)
                        for ph in range(phs, phe):
                            for pw in range(pws, pwe):
                                if arg[r, ch, ph, pw] == hh * w + ww:
                                    g += top_diff[r, ch, ph, pw]
                    out[n, ch, hh, ww] = g
    return out


def test_shapes() -> None:
    assert shapes("ROIPooling", ((1, 512, 38, 50), (128, 5)), pooled_h=7, pooled_w=7,
                  spatial_scale=0.0625) == ((128, 512, 7, 7),)
    assert shapes("ROIPooling", ((2, 3, 8, 8), (4, 5, 1, 1)), pooled_h=2, pooled_w=3) == (
        (4, 3, 2, 3),)


def test_checks() -> None:
    shape_error("ROIPooling", ((1, 3, 8, 8), (4, 5)), match="pooled_h must be > 0",
                pooled_w=2)  # unset: Caffe's default 0
    shape_error("ROIPooling", ((1, 3, 8, 8), (4, 5)), match="pooled_h must be > 0",
                field="pooled_h", pooled_h=-1, pooled_w=2)
    shape_error("ROIPooling", ((1, 3, 8, 8), (4, 5)), match="pooled_w must be > 0",
                field="pooled_w", pooled_h=2, pooled_w=0)


def test_params_from_caffe_text() -> None:
    p = params_from_text("ROIPooling",
                         "roi_pooling_param { pooled_w: 6 pooled_h: 6 spatial_scale: 0.0625 }")
    assert (p.pooled_h, p.pooled_w, p.spatial_scale) == (6, 6, 0.0625)
    assert kind("ROIPooling").doc.endswith(
        "(fork: Fast R-CNN's Caffe, rbgirshick/caffe-fast-rcnn).")


ROIS = np.array([
    [0, 0, 0, 15, 15],      # the whole map at scale 1/2
    [1, 3.0, 5.0, 9.0, 7.0],
    [0, 1.0, 1.0, 1.0, 1.0],   # a single pixel: one bin holds it, the others repeat it
    [1, -6.0, -2.0, 4.0, 30.0],  # beyond the map on three sides: clipped, empty bins
    [0, 5.0, 5.0, 2.0, 9.0],   # reversed in x: forced to width 1, no gradient in Caffe
    [1, 2.5, 3.0, 6.5, 7.0],   # halves round away from zero
], dtype=np.float64)


@pytest.mark.parametrize("pooled", [(2, 2), (3, 2), (4, 5)])
def test_forward_and_backward(pooled: tuple[int, int]) -> None:
    import torch

    ph, pw = pooled
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    x[1, 0, 2:5, 1:4] = 0.5  # ties: the first maximum in raster order wins
    x.requires_grad_()
    rois = torch.tensor(ROIS)
    m, tops = lower("ROIPooling", ((2, 3, 8, 8), (6, 5)), pooled_h=ph, pooled_w=pw,
                    spatial_scale=0.5)
    (y,) = m(x, rois)
    want, arg = _forward(x.detach().numpy(), ROIS, ph, pw, 0.5)
    close(y, want, 1e-12)
    assert tuple(y.shape) == tops[0]
    g = torch.randn(y.shape, dtype=torch.float64)
    y.backward(g)
    close(x.grad, _backward((2, 3, 8, 8), ROIS, g.numpy(), arg, ph, pw, 0.5), 1e-12)


def test_float32_rounding_of_corners() -> None:
    """round(x * scale) in C: 2.5 -> 3, -2.5 -> -3 (torch.round would give 2, -2)."""
    import torch

    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    rois = torch.tensor([[0, 5.0, 5.0, 5.0, 5.0], [1, -5.0, -5.0, 9.0, 9.0]])
    m, _ = lower("ROIPooling", ((2, 1, 6, 6), (2, 5)), pooled_h=1, pooled_w=1,
                 spatial_scale=0.5)
    (y,) = m(x, rois)
    want, _ = _forward(x.double().numpy(), rois.double().numpy(), 1, 1, 0.5)
    close(y.double(), want, 0)


def test_convert_both_ways(tmp_path: Path) -> None:
    round_trip(tmp_path, """input: "conv5_3" input_shape { dim: 1 dim: 16 dim: 38 dim: 50 }
        input: "rois" input_shape { dim: 128 dim: 5 }
        layer { name: "pool5" type: "ROIPooling" bottom: "conv5_3" bottom: "rois" top: "pool5"
                roi_pooling_param { pooled_w: 7 pooled_h: 7 spatial_scale: 0.0625 } }""")
