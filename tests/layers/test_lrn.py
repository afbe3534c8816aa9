"""Lowering of the LRN type."""

from __future__ import annotations

import numpy as np

from netdsl.layers.lrn import NormRegion

from .helpers import close, lower, np_, rand


def test_across_channels_matches_caffe_formula() -> None:
    x = rand(2, 7, 3, 3)
    m, _ = lower("LRN", ((2, 7, 3, 3),), local_size=5, alpha=1e-2, beta=0.75, k=2.0)
    (y,) = m(x)
    xn = np_(x)
    sq = np.pad(xn**2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, i:i + 7] for i in range(5))
    close(y, xn * (2.0 + 1e-2 / 5 * window) ** -0.75, 1e-5)


def test_within_channel_shape() -> None:
    x = rand(1, 2, 5, 5)
    m, tops = lower("LRN", ((1, 2, 5, 5),), local_size=3,
                    norm_region=NormRegion.WITHIN_CHANNEL)
    (y,) = m(x)
    assert tuple(y.shape) == tops[0]
