"""Lowering of the Pooling type."""

from __future__ import annotations

import numpy as np
import torch

from netdsl.layers.pooling import PoolMethod

from .helpers import close, lower, np_, rand, shapes


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
