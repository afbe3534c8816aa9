"""Lowering of the Pooling type."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import netdsl
from netdsl.diagnostics import collect_warnings
from netdsl.layers.pooling import PoolMethod, RoundMode
from netdsl.shapes import infer_shapes

from .helpers import close, field_line, lower, np_, params_from_text, rand, shape_error, shapes
from .roundtrip import convert_both_ways


def _caffe_max_pool(x: np.ndarray, k: int, s: int, p: int, out: tuple[int, int]):
    """Caffe's MAX forward loop: windows clipped to the image, first maximum wins."""
    n, c, h, w = x.shape
    top = np.empty((n, c, *out))
    mask = np.empty((n, c, *out))
    for ph in range(out[0]):
        for pw in range(out[1]):
            hs, ws = ph * s - p, pw * s - p
            he, we = min(hs + k, h), min(ws + k, w)
            hs, ws = max(hs, 0), max(ws, 0)
            win = x[:, :, hs:he, ws:we].reshape(n, c, -1)
            arg = win.argmax(axis=2)
            top[:, :, ph, pw] = win.max(axis=2)
            wh = we - ws
            mask[:, :, ph, pw] = (hs + arg // wh) * w + ws + arg % wh
    return top, mask


def test_alexnet_pool1_55_to_27() -> None:
    assert shapes("Pooling", ((2, 96, 55, 55),), kernel_size=3, stride=2) == ((2, 96, 27, 27),)
    x = rand(1, 2, 55, 55)
    m, tops = lower("Pooling", ((1, 2, 55, 55),), kernel_size=3, stride=2)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (1, 2, 27, 27)
    close(y, torch.nn.functional.max_pool2d(x, 3, 2))


def test_ceil_mode_with_padding_and_mask_top() -> None:
    x = rand(2, 3, 7, 7)
    m, tops = lower("Pooling", ((2, 3, 7, 7),), tops=2, kernel_size=3, stride=2, pad=1)
    y, mask = m(x)
    assert tops == ((2, 3, 4, 4),) * 2
    ref, ref_mask = _caffe_max_pool(np_(x), 3, 2, 1, (4, 4))
    close(y, ref)
    close(mask, ref_mask)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_low_precision_input_has_an_exact_float32_mask(dtype: torch.dtype) -> None:
    """A 40x64 plane has 2560 positions: bfloat16 names exactly only up to 256, float16
    up to 2048. The mask stays float32, as Caffe's float blob holds it, and exact."""
    x = rand(2, 3, 40, 64).to(dtype)
    m, tops = lower("Pooling", ((2, 3, 40, 64),), tops=2, kernel_size=3, stride=2, pad=1)
    y, mask = m(x)
    assert (y.dtype, mask.dtype) == (dtype, torch.float32)
    ref, ref_mask = _caffe_max_pool(np_(x), 3, 2, 1, tops[0][2:])  # ties: the first
    assert np.array_equal(np_(mask), ref_mask) and ref_mask.max() > 2048
    assert np.array_equal(np_(y), ref)


def test_average_counts_padding_like_caffe() -> None:
    x = rand(1, 2, 6, 6)
    m, tops = lower("Pooling", ((1, 2, 6, 6),), pool=PoolMethod.AVE, kernel_size=3, stride=3,
                    pad=1)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (1, 2, 3, 3)  # ceil((6 + 2 - 3) / 3) + 1
    ref = torch.nn.functional.avg_pool2d(x, 3, 3, 1, ceil_mode=True, count_include_pad=True)
    close(y, ref)


def test_global_pooling() -> None:
    x = rand(2, 3, 5, 4)
    m, tops = lower("Pooling", ((2, 3, 5, 4),), pool=PoolMethod.AVE, global_pooling=True)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 3, 1, 1)
    close(y, x.mean(dim=(2, 3), keepdim=True))


# ---------------------------------------------------------------- windows larger than input


def _caffe_pooled_side(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """PoolingLayer::Reshape (BVLC caffe src/caffe/layers/pooling_layer.cpp) in floats,
    as Caffe computes it: ``static_cast<int>(ceil(float(size + 2p - k) / s)) + 1``, then
    one less when padded and the last window starts in the padding."""
    rounding = math.ceil if ceil else math.floor
    out = int(rounding(float(size + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= size + p:
        out -= 1
    return out


@pytest.mark.parametrize("size, k, s, p, mode", [
    (1, 2, 2, 0, RoundMode.CEIL),   # OpenPose's 1x1 placeholder: ceil(-0.5) + 1 = 1
    (1, 3, 2, 1, RoundMode.CEIL),   # fits once padded: no warning
    (1, 3, 2, 0, RoundMode.CEIL),   # ceil(-1) + 1 = 0: an empty blob in Caffe
    (1, 2, 2, 0, RoundMode.FLOOR),  # floor(-0.5) + 1 = 0
    (2, 3, 1, 0, RoundMode.CEIL),   # ceil(-1) + 1 = 0
    (1, 3, 1, 0, RoundMode.CEIL),   # ceil(-2) + 1 = -1: Caffe stops
    (4, 6, 1, 0, RoundMode.FLOOR),  # -1
    (1, 5, 3, 1, RoundMode.CEIL),   # ceil(-2 / 3) + 1 = 1, padded: no clip at 0
])
def test_a_window_larger_than_its_input_is_what_caffe_computes(
        size: int, k: int, s: int, p: int, mode: RoundMode) -> None:
    caffe = _caffe_pooled_side(size, k, s, p, mode is RoundMode.CEIL)
    kw = {"kernel_size": k, "stride": s, "pad": p, "round_mode": mode}
    bottom = ((2, 3, size, size),)
    if caffe < 0:
        err = shape_error("Pooling", bottom, match=f"gives side {caffe}, and Caffe stops",
                          field="kernel_size", **kw)
        assert err.hint is not None and "--input" in err.hint
        return
    with collect_warnings() as ws:
        (top,) = shapes("Pooling", bottom, **kw)
    assert top == (2, 3, max(caffe, 1), max(caffe, 1))
    if size + 2 * p >= k:
        assert ws == []
        return
    (w,) = ws  # one warning for both axes of a square window
    assert w.span.line == field_line(kw, "kernel_size")
    assert w.message.startswith(f"Pooling 'L': kernel {k} is larger than the padded input "
                                f"{size + 2 * p}; ")
    if caffe == 0:
        assert "gives side 0, an empty blob in Caffe; netdsl goes on with side 1" in w.message
    else:
        assert f"Caffe computes side {caffe} with its formula and goes on" in w.message
    assert w.hint is not None and "--input NAME=C,H,W" in w.hint


def test_one_warning_per_axis_that_differs() -> None:
    with collect_warnings() as ws:
        (top,) = shapes("Pooling", ((1, 1, 1, 2),), kernel_size=3, stride=2)
    assert top == (1, 1, 1, 1)  # height: ceil(-2 / 2) + 1 = 0, so 1; width: ceil(-1 / 2) + 1
    assert [w.message.split(";")[0] for w in ws] == [
        "Pooling 'L': kernel 3 is larger than the padded input 1",
        "Pooling 'L': kernel 3 is larger than the padded input 2"]
    assert "side 0" in ws[0].message and "side 1" in ws[1].message


# ------------------------------------------------------------------------------- ceil_mode


@pytest.mark.parametrize("ceil_mode, side", [(True, 4), (False, 3), (None, 4)])
def test_ceil_mode_is_round_mode(ceil_mode: bool | None, side: int) -> None:
    """The forks' ``ceil_mode: true`` is CEIL, ``false`` FLOOR: 7 -> ceil or floor of
    (7 - 2) / 2, plus 1 (synopsys-caffe pooling_layer.cpp)."""
    kw: dict[str, Any] = {"kernel_size": 2, "stride": 2}
    if ceil_mode is not None:
        kw["ceil_mode"] = ceil_mode
    assert shapes("Pooling", ((1, 1, 7, 7),), **kw) == ((1, 1, side, side),)
    mode = RoundMode.CEIL if ceil_mode in (True, None) else RoundMode.FLOOR
    assert shapes("Pooling", ((1, 1, 7, 7),), kernel_size=2, stride=2,
                  round_mode=mode) == ((1, 1, side, side),)


def test_ceil_mode_and_round_mode_must_agree() -> None:
    assert shapes("Pooling", ((1, 1, 7, 7),), kernel_size=2, stride=2, ceil_mode=False,
                  round_mode=RoundMode.FLOOR) == ((1, 1, 3, 3),)
    err = shape_error("Pooling", ((1, 1, 7, 7),), match="ceil_mode: true means round_mode: "
                      "CEIL, but round_mode is FLOOR", field="ceil_mode", kernel_size=2,
                      stride=2, ceil_mode=True, round_mode=RoundMode.FLOOR)
    assert err.hint == "give one of the two"


def test_ceil_mode_from_a_fork_prototxt_and_its_kernel() -> None:
    p = params_from_text("Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 "
                         "ceil_mode: false }")
    assert p.ceil_mode is False and p.round_mode is RoundMode.CEIL
    x = rand(2, 3, 8, 8)
    m, tops = lower("Pooling", ((2, 3, 8, 8),), kernel_size=3, stride=2, ceil_mode=False)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 3, 3, 3)  # floor(5 / 2) + 1; CEIL would give 4
    ref, _ = _caffe_max_pool(np_(x), 3, 2, 0, (3, 3))
    close(y, ref)


def test_ceil_mode_converts_both_ways(tmp_path: Path) -> None:
    _, back = convert_both_ways(
        tmp_path, 'input: "data" input_shape { dim: 1 dim: 3 dim: 9 dim: 9 }\n'
        'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"\n'
        '        pooling_param { pool: AVE kernel_size: 2 stride: 2 ceil_mode: false } }\n')
    assert "ceil_mode: false" in back
    table = infer_shapes(netdsl.load(tmp_path / "back.prototxt", "test"))
    assert table.of("pool").tops == ((1, 3, 4, 4),)  # floor(7 / 2) + 1


# --- STOCHASTIC pooling (BVLC caffe src/caffe/layers/pooling_layer.cu) -------------------

FLT_MIN = float(np.finfo(np.float32).tiny)


def _windows(h: int, w: int, k: int, s: int, out: tuple[int, int]):
    """Caffe's STOCHASTIC windows: start ``p * s``, end clipped to the image, no pad."""
    for ph in range(out[0]):
        for pw in range(out[1]):
            hs, ws = ph * s, pw * s
            yield ph, pw, hs, min(hs + k, h), ws, min(ws + k, w)


def _caffe_stochastic_test(x: np.ndarray, k: int, s: int, out: tuple[int, int]) -> np.ndarray:
    """StoPoolForwardTest, loop for loop: cumsum starts at FLT_MIN, cumvalues at 0."""
    n, c, h, w = x.shape
    top = np.zeros((n, c, *out))
    for i in range(n):
        for j in range(c):
            for ph, pw, hs, he, ws, we in _windows(h, w, k, s, out):
                cumsum, cumvalues = FLT_MIN, 0.0
                for hh in range(hs, he):
                    for ww in range(ws, we):
                        cumsum += x[i, j, hh, ww]
                        cumvalues += x[i, j, hh, ww] * x[i, j, hh, ww]
                top[i, j, ph, pw] = cumvalues / cumsum
    return top


def _stochastic(train: bool, bottom: tuple[int, ...], **kw: Any) -> Any:
    m, tops = lower("Pooling", (bottom,), pool=PoolMethod.STOCHASTIC, **kw)
    m.kernel.train(train)
    return m, tops


def test_stochastic_test_phase_is_caffes_weighted_average() -> None:
    x = rand(2, 3, 7, 7, seed=5).abs().double()
    x[0, 0, :3, :3] = 0.0  # an all-zero window: 0 / FLT_MIN = 0
    m, tops = _stochastic(False, (2, 3, 7, 7), kernel_size=3, stride=2)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 3, 3, 3)
    close(y, _caffe_stochastic_test(np_(x), 3, 2, (3, 3)), tol=1e-13)


def test_stochastic_train_outputs_one_value_of_each_window() -> None:
    x = rand(2, 3, 8, 7, seed=6).abs().double()
    torch.manual_seed(0)
    m, tops = _stochastic(True, (2, 3, 8, 7), kernel_size=3, stride=2)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0] == (2, 3, 4, 3)  # ceil: last windows clipped
    xs, ys = np_(x), np_(y)
    for i in range(2):
        for j in range(3):
            for ph, pw, hs, he, ws, we in _windows(8, 7, 3, 2, (4, 3)):
                assert ys[i, j, ph, pw] in xs[i, j, hs:he, ws:we]


def test_stochastic_train_picks_in_proportion_to_the_values() -> None:
    window = torch.tensor([[0.0, 1.0], [3.0, 4.0]], dtype=torch.float64)
    n = 40000
    x = window.expand(1, n, 2, 2).contiguous()
    torch.manual_seed(1234)
    m, _ = _stochastic(True, (1, n, 2, 2), kernel_size=2, stride=2)
    (y,) = m(x)
    picks = np_(y).reshape(-1)
    for value, p in ((0.0, 0.0), (1.0, 1 / 8), (3.0, 3 / 8), (4.0, 4 / 8)):
        freq = float(np.mean(picks == value))
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(freq - p) <= 5 * sigma + 1e-12, (value, freq, p)


def test_stochastic_train_an_all_zero_window_gives_zero() -> None:
    m, _ = _stochastic(True, (1, 1, 4, 4), kernel_size=2, stride=2)
    (y,) = m(torch.zeros(1, 1, 4, 4))
    assert torch.equal(y, torch.zeros(1, 1, 2, 2))


def test_stochastic_train_gradient_goes_to_the_sampled_position_only() -> None:
    shape = (2, 2, 7, 7)
    x = rand(*shape, seed=7).abs().double().requires_grad_(True)
    torch.manual_seed(3)
    m, tops = _stochastic(True, shape, kernel_size=3, stride=2)  # overlapping windows
    (y,) = m(x)
    diff = rand(*tops[0], seed=8).double()
    y.backward(diff)
    xs, ys, ds = np_(x), np_(y), np_(diff)
    want = np.zeros(shape)
    for i in range(2):
        for j in range(2):
            for ph, pw, hs, he, ws, we in _windows(7, 7, 3, 2, tops[0][2:]):
                win = xs[i, j, hs:he, ws:we]
                hits = np.argwhere(win == ys[i, j, ph, pw])
                assert len(hits) == 1  # random values: the pick is one position
                r, c = hits[0]
                want[i, j, hs + r, ws + c] += ds[i, j, ph, pw]  # StoPoolBackward
    assert x.grad is not None
    close(x.grad, want, tol=1e-13)


def test_stochastic_train_runs_as_one_graph() -> None:
    from netdsl.kernels.pooling import StochasticPool

    pool = StochasticPool(3, 2, 0, "CEIL", False).train()
    compiled = torch.compile(pool, fullgraph=True, backend="aot_eager")
    x = rand(1, 2, 9, 9).abs()
    torch.manual_seed(0)
    y = compiled(x)
    torch.manual_seed(0)
    assert torch.equal(y, pool(x))


def test_stochastic_with_pad_is_refused_as_caffe_does() -> None:
    err = shape_error("Pooling", ((1, 1, 8, 8),), match="padding only for MAX and AVE",
                      field="pad", pool=PoolMethod.STOCHASTIC, kernel_size=3, pad=1)
    assert err.hint == "drop pad, or use pool: MAX or AVE"


def test_a_bottom_of_too_few_axes_names_its_shape() -> None:
    shape_error("Pooling", ((2, 8),), match=r"its bottom has shape \[2, 8\]: needs 4 axes",
                field="bottom", kernel_size=3)
