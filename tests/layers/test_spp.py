"""SPP against a numpy transcription of BVLC caffe's spp_layer.cpp (GetPoolingParam,
then split, pooling_layer.cpp's Forward_cpu/Backward_cpu, flatten and concat)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers.pooling import PoolMethod

from .helpers import close, lower, params_from_text, run_backward, shape_error, shapes
from .roundtrip import convert_both_ways


def get_pooling_param(level: int, h: int, w: int) -> tuple[int, int, int, int]:
    num_bins = 2**level
    kernel_h = math.ceil(h / num_bins)
    pad_h = (kernel_h * num_bins - h + 1) // 2
    kernel_w = math.ceil(w / num_bins)
    pad_w = (kernel_w * num_bins - w + 1) // 2
    return kernel_h, kernel_w, pad_h, pad_w


def pooled(size: int, k: int, pad: int, padded: bool) -> int:
    out = int(math.ceil((size + 2 * pad - k) / k)) + 1
    if padded and (out - 1) * k >= size + pad:
        out -= 1
    return out


def windows(h: int, w: int, kh: int, kw: int, ph: int, pw: int):
    """Pooling windows in Caffe's order: (ph, pw, hstart, hend, wstart, wend, pool_size)."""
    padded = bool(ph or pw)
    for i in range(pooled(h, kh, ph, padded)):
        for j in range(pooled(w, kw, pw, padded)):
            hs, ws = i * kh - ph, j * kw - pw
            he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
            size = (he - hs) * (we - ws)  # AVE: counted before clipping to the image
            yield i, j, max(hs, 0), min(he, h), max(ws, 0), min(we, w), size


def caffe_pool(x: np.ndarray, kh: int, kw: int, ph: int, pw: int, method: str):
    n, c, h, w = x.shape
    wins = list(windows(h, w, kh, kw, ph, pw))
    oh, ow = wins[-1][0] + 1, wins[-1][1] + 1
    top, mask = np.zeros((n, c, oh, ow)), np.zeros((n, c, oh, ow), dtype=int)
    for a in range(n):
        for b in range(c):
            for i, j, hs, he, ws, we, size in wins:
                if method == "MAX":
                    best, arg = -np.finfo(np.float32).max, -1
                    for r in range(hs, he):
                        for s in range(ws, we):
                            if x[a, b, r, s] > best:  # the first maximum wins
                                best, arg = x[a, b, r, s], r * w + s
                    top[a, b, i, j], mask[a, b, i, j] = best, arg
                else:
                    top[a, b, i, j] = x[a, b, hs:he, ws:we].sum() / size
    return top, mask, wins


def caffe_pool_backward(shape, top_diff, mask, wins, method):
    n, c, h, w = shape
    out = np.zeros(shape)
    for a in range(n):
        for b in range(c):
            for i, j, hs, he, ws, we, size in wins:
                if method == "MAX":
                    m = mask[a, b, i, j]
                    out[a, b, m // w, m % w] += top_diff[a, b, i, j]
                else:
                    out[a, b, hs:he, ws:we] += top_diff[a, b, i, j] / size
    return out


def caffe_spp(x: np.ndarray, height: int, method: str, top_diff: np.ndarray):
    n, _, h, w = x.shape
    tops, grads, offset = [], np.zeros(x.shape), 0
    for level in range(height):
        kh, kw, ph, pw = get_pooling_param(level, h, w)
        top, mask, wins = caffe_pool(x, kh, kw, ph, pw, method)
        tops.append(top.reshape(n, -1) if height > 1 else top)
        size = top[0].size
        diff = top_diff[:, offset:offset + size] if height > 1 else top_diff
        grads += caffe_pool_backward(x.shape, diff.reshape(top.shape), mask, wins, method)
        offset += size
    return (np.concatenate(tops, 1) if height > 1 else tops[0]), grads


def test_fields() -> None:
    p = params_from_text("SPP", "spp_param { pyramid_height: 3 pool: AVE }")
    assert (p.pyramid_height, p.pool) == (3, PoolMethod.AVE)


def test_shape_rule() -> None:
    # SPP-net (He et al. 2014) on ZF-5's 256 conv5 maps: 1 + 4 + 16 bins per map
    assert shapes("SPP", ((2, 256, 13, 13),), pyramid_height=3) == ((2, 256 * 21),)
    assert shapes("SPP", ((2, 3, 16, 40),), pyramid_height=4) == ((2, 3 * (1 + 4 + 16 + 64)),)
    # 10 rows in 8 bins: windows of 2 padded by 3, which Caffe's pooling refuses
    shape_error("SPP", ((2, 3, 10, 7),), match="level 3 would pad 3x1 around a 2x1 window",
                field="pyramid_height", pyramid_height=4)
    assert shapes("SPP", ((2, 3, 10, 7),), pyramid_height=1) == ((2, 3, 1, 1),)


def test_caffe_checks() -> None:
    shape_error("SPP", ((2, 3, 8, 8),), match="needs pyramid_height")
    shape_error("SPP", ((2, 3, 8),), match="4-D", pyramid_height=2)
    shape_error("SPP", ((1,),), match="4-D", pyramid_height=1)  # was a ValueError (fuzzing)
    shape_error("SPP", ((2, 3, 1, 8),), match="too small for 3 levels",
                field="pyramid_height", pyramid_height=3)
    shape_error("SPP", ((2, 3, 10, 7),), match="only for MAX and AVE", field="pool",
                pyramid_height=2, pool=PoolMethod.STOCHASTIC)
    assert shapes("SPP", ((2, 3, 8, 8),), pyramid_height=3, pool=PoolMethod.STOCHASTIC) == (
        (2, 63),)  # 8 divides evenly: no padding


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape, height", [((2, 3, 10, 7), 3), ((1, 2, 13, 13), 3),
                                           ((1, 2, 5, 6), 1), ((1, 1, 9, 4), 2)])
def test_forward_and_backward_match_caffe(method: str, shape: tuple[int, ...], height: int
                                          ) -> None:
    x = torch.randn(shape, dtype=torch.float64)
    y, top_diff, grad = run_backward("SPP", x, pyramid_height=height, pool=PoolMethod[method])
    want, want_grad = caffe_spp(x.numpy(), height, method, top_diff.numpy())
    close(y, want, 1e-12)
    close(grad, want_grad, 1e-12)


def test_stochastic_is_the_test_phase_formula() -> None:
    m, _ = lower("SPP", ((1, 1, 4, 4),), pyramid_height=2, pool=PoolMethod.STOCHASTIC)
    m.kernel.eval()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    (y,) = m(x)
    full = (x * x).sum() / x.sum()
    close(y[0, 0], full.numpy(), 1e-5)  # level 0: one window over the map
    m.kernel.train()  # TRAIN samples one value of each window, as Caffe's pooling does
    (sampled,) = m(x)
    assert sampled[0, 0].item() in x.reshape(-1).tolist()  # level 0: one value of the map


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 1 dim: 3 dim: 13 dim: 13 }
layer { name: "spp" type: "SPP" bottom: "data" top: "spp" spp_param { pyramid_height: 3 } }
""")
    assert "type: SPP  pyramid_height: 3" in net and "spp_param { pyramid_height: 3 }" in back
