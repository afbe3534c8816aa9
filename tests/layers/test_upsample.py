"""Upsample (fork: SegNet's Caffe, alexgkendall/caffe-segnet upsample_layer.cpp): every
CHECK of LayerSetUp and Reshape, and max-unpooling against a numpy transcription of
Forward_cpu and Backward_cpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.diagnostics import collect_warnings

from .helpers import (
    close,
    field_line,
    kind,
    lower,
    np_,
    params_from_text,
    shape_error,
    shapes,
)
from .roundtrip import round_trip


def caffe_upsample(x: np.ndarray, mask: np.ndarray, out_hw: tuple[int, int],
                   top_diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UpsampleLayer::Forward_cpu and Backward_cpu, loop for loop. Where Caffe aborts (an
    index past the map) or writes out of bounds (a negative one) the entry is skipped,
    as netdsl drops it."""
    n, c, h, w = x.shape
    size = out_hw[0] * out_hw[1]
    top = np.zeros((n, c, size))
    bottom_diff = np.zeros((n, c, h * w))
    xs, ms = x.reshape(n, c, h * w), mask.reshape(n, c, h * w)
    td = top_diff.reshape(n, c, size)
    for i_n in range(n):
        for i_c in range(c):
            for i in range(h * w):
                idx = int(ms[i_n, i_c, i])  # static_cast<int>
                if 0 <= idx < size:
                    top[i_n, i_c, idx] = xs[i_n, i_c, i]
                    bottom_diff[i_n, i_c, i] = td[i_n, i_c, idx]
    return top.reshape(n, c, *out_hw), bottom_diff.reshape(x.shape)


def test_fields_and_defaults_from_the_forks_proto() -> None:
    p = params_from_text("Upsample", "")
    assert (p.scale, p.scale_h, p.scale_w, p.upsample_h, p.upsample_w) == (None,) * 5
    assert (p.pad_out_h, p.pad_out_w) == (False, False)
    # SegNet's segnet_train.prototxt writes the deprecated scale beside the exact size
    p = params_from_text("Upsample", "upsample_param { scale: 2 upsample_w: 30 upsample_h: 23 }")
    assert (p.scale, p.upsample_h, p.upsample_w) == (2, 23, 30)
    assert kind("Upsample").blobs == ()


def test_output_sizes() -> None:
    b = ((1, 64, 23, 30),) * 2
    assert shapes("Upsample", b) == ((1, 64, 46, 60),)  # scale unset: 2
    assert shapes("Upsample", b, scale=2, pad_out_h=True) == ((1, 64, 45, 60),)
    assert shapes("Upsample", b, scale=2, upsample_h=45, upsample_w=59) == ((1, 64, 45, 59),)
    assert shapes("Upsample", b, scale_h=3, scale_w=2, pad_out_w=True) == ((1, 64, 69, 59),)
    assert shapes("Upsample", b, scale=4) == ((1, 64, 92, 120),)


@pytest.mark.parametrize("given, other", [("upsample_h", "upsample_w"),
                                          ("upsample_w", "upsample_h")])
def test_a_lone_upsample_side_is_ignored_with_a_warning(given: str, other: str) -> None:
    """upsample_h without upsample_w passes Caffe's CHECK and Caffe ignores it, silently:
    the scale rules. netdsl says so, at the field."""
    b = ((1, 64, 23, 30),) * 2
    kw = {given: 40, "scale": 3}
    with collect_warnings() as ws:
        assert shapes("Upsample", b, **kw) == ((1, 64, 69, 90),)
    (w,) = ws
    assert w.message == (f"Upsample 'L': {given} without {other} is ignored, as Caffe "
                         "ignores it: the output size comes from the scale")
    assert w.span.line == field_line(kw, given) and w.hint == f"give {other} too, or drop {given}"
    with collect_warnings() as ws:
        shapes("Upsample", b, upsample_h=40, upsample_w=50)
    assert ws == []


def test_layer_setup_checks() -> None:
    b = ((1, 2, 4, 4),) * 2
    shape_error("Upsample", b, match="upsample_h and upsample_w, or", field="scale",
                scale=2, scale_h=2, scale_w=2)
    shape_error("Upsample", b, match="upsample_h and upsample_w, or", field="scale_h",
                scale_h=2)
    shape_error("Upsample", b, match="upsample_h and upsample_w, or", field="scale_w",
                scale_w=2)
    shape_error("Upsample", b, match="upsample_h must be greater than 1", field="upsample_h",
                upsample_h=1, upsample_w=8)
    shape_error("Upsample", b, match="upsample_w must be greater than 1", field="upsample_w",
                upsample_h=8, upsample_w=0)
    shape_error("Upsample", b, match="scale must be greater than 1", field="scale", scale=1)
    shape_error("Upsample", b, match="scale_w must be greater than 1", field="scale_w",
                scale_h=2, scale_w=1)
    shape_error("Upsample", b, match="pad_out_h needs a factor of 2", field="pad_out_h",
                scale=3, pad_out_h=True)
    shape_error("Upsample", b, match="pad_out_w needs a factor of 2", field="pad_out_w",
                scale_h=2, scale_w=3, pad_out_w=True)


def test_reshape_checks() -> None:
    shape_error("Upsample", ((1, 2, 4), (1, 2, 4)), match="4-D")
    shape_error("Upsample", ((1, 2, 4, 4), (1, 2, 16)), match="4-D .* mask")
    for mask in ((2, 2, 4, 4), (1, 3, 4, 4), (1, 2, 5, 4), (1, 2, 4, 5)):
        shape_error("Upsample", ((1, 2, 4, 4), mask), match="must have the input's shape")


def _check(x: torch.Tensor, mask: torch.Tensor, **kw: object) -> torch.Tensor:
    m, tops = lower("Upsample", (tuple(x.shape), tuple(mask.shape)), **kw)
    x = x.double().requires_grad_()
    (y,) = m(x, mask)
    assert tuple(y.shape) == tops[0]
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y.backward(dy)
    ref_top, ref_diff = caffe_upsample(np_(x), np_(mask), tops[0][2:], np_(dy))
    close(y, ref_top, 0)
    assert x.grad is not None
    close(x.grad, ref_diff, 0)
    return y


def test_unpools_a_pooling_mask() -> None:
    """SegNet's pairing: Pooling (2x2/2, ceil) gives its mask, Upsample puts each max
    back where it was; 7x9 pools to 4x5, which upsample_h/w bring back to 7x9."""
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    pool, _ = lower("Pooling", ((2, 3, 7, 9),), tops=2, kernel_size=2, stride=2)
    pooled, mask = pool(x)
    y = _check(pooled, mask, upsample_h=7, upsample_w=9)
    assert torch.equal(y != 0, torch.nn.functional.max_unpool2d(
        pooled, mask.long(), 2, 2, output_size=(7, 9)) != 0)
    kept = y != 0
    close(y[kept], np_(x)[np_(kept).astype(bool)], 0)  # the maxima, at their places


def test_repeated_and_invalid_positions_follow_caffes_loop() -> None:
    """Overlapping pooling windows repeat a position: Caffe's CPU loop keeps the last
    value and its backward sends the position's gradient to every entry that named it.
    Negative or too large positions are dropped (Caffe writes out of bounds or aborts)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, 3, 3, generator=g)
    mask = torch.randint(0, 12, (2, 2, 3, 3), generator=g).float()  # 3x4 map: repeats
    mask[0, 0, 0, 0], mask[1, 1, 2, 2], mask[0, 1, 1, 1] = -1, 12, 2.9  # truncated to 2
    assert any(len(set(plane.tolist())) < 9 for plane in mask.reshape(4, 9))
    _check(x, mask, upsample_h=3, upsample_w=4)


def test_convert_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, """name: "n"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 45 dim: 60 } } }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "pool_mask"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "up" type: "Upsample" bottom: "pool" bottom: "pool_mask" top: "up"
        upsample_param { scale: 2 pad_out_h: true } }
layer { name: "up2" type: "Upsample" bottom: "pool" bottom: "pool_mask" top: "up2"
        upsample_param { scale: 2 upsample_w: 60 upsample_h: 45 } }
""")


@pytest.mark.parametrize("n_bottoms", [1, 3])
def test_needs_exactly_the_map_and_its_mask(tmp_path: Path, n_bottoms: int) -> None:
    import netdsl
    from netdsl.diagnostics import NetdslError

    bottoms = " ".join(['bottom: "data"'] * n_bottoms)
    spec = tmp_path / "u.prototxt"
    spec.write_text('layer { name: "data" type: "Input" top: "data" '
                    "input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n"
                    f'layer {{ name: "up" type: "Upsample" {bottoms} top: "up" }}\n')
    with pytest.raises(NetdslError, match="takes exactly 2 bottom"):
        netdsl.load(spec, "train")


def test_unpools_a_bfloat16_pooling_by_its_float32_mask() -> None:
    """Pooling on bfloat16 keeps its mask float32 (exact for a 40x64 map's 2560
    positions), and Upsample takes the pair: every maximum goes back to its place."""
    x = torch.randn(1, 2, 40, 64, generator=torch.Generator().manual_seed(3)).bfloat16()
    pool, _ = lower("Pooling", ((1, 2, 40, 64),), tops=2, kernel_size=2, stride=2)
    pooled, mask = pool(x)
    assert (pooled.dtype, mask.dtype) == (torch.bfloat16, torch.float32)
    up, _ = lower("Upsample", ((1, 2, 20, 32),) * 2, upsample_h=40, upsample_w=64)
    (y,) = up(pooled, mask)
    assert y.dtype == torch.bfloat16
    want = torch.nn.functional.max_unpool2d(pooled.float(), mask.long(), 2, 2)
    assert torch.equal(y.float(), want)
    assert torch.equal(y.float().reshape(2, -1).gather(1, mask.long().reshape(2, -1)),
                       pooled.float().reshape(2, -1))


def test_a_low_precision_mask_is_refused_where_it_cannot_name_the_positions() -> None:
    """bfloat16 holds integers exactly up to 256 only: a 16x20 map's positions would be
    rounded, silently misplacing the values; the kernel says so instead."""
    from netdsl.kernels.resample import max_unpool

    x = torch.randn(1, 1, 8, 10)
    pool, _ = lower("Pooling", ((1, 1, 16, 20),), tops=2, kernel_size=2, stride=2)
    _, mask = pool(torch.randn(1, 1, 16, 20))
    with pytest.raises(ValueError, match="must be float32"):
        max_unpool(x.bfloat16(), mask.bfloat16(), (16, 20))
    small = max_unpool(x[..., :4, :4].bfloat16(), torch.zeros(1, 1, 4, 4).bfloat16(), (8, 8))
    assert small.shape == (1, 1, 8, 8)  # 64 positions: exact in bfloat16
