"""netdsl.caffe_math's pooling and LRN window arithmetic against Caffe's C++.

``pooled_size`` is checked against hand-worked cases from real nets and against
``caffe_pooled_size_ref`` (in ``caffe_refs``), a transcription of
``PoolingLayer::Reshape`` with its float ``ceil``/``floor`` and last-window clip;
``lrn_window`` against ``LRNLayer``'s ``pre_pad``; ``torch_pool_matches`` on geometries
where torch's pooling windows are and are not Caffe's.
"""

from __future__ import annotations

import pytest

from netdsl.caffe_math import lrn_window, pooled_size, torch_pool_matches
from tests.kernels.caffe_refs import caffe_pooled_size_ref


@pytest.mark.parametrize(
    "in_size,kernel,stride,pad,mode,expected",
    [
        (55, 3, 2, 0, "CEIL", 27),  # AlexNet pool1
        (27, 3, 2, 0, "CEIL", 13),  # AlexNet pool2
        (13, 3, 2, 0, "CEIL", 6),  # AlexNet pool5
        (112, 3, 2, 0, "CEIL", 56),  # GoogLeNet pool1 (ceil gives one more than floor)
        (112, 3, 2, 0, "FLOOR", 55),
        (6, 3, 2, 1, "CEIL", 4),  # pad, clip does not trigger: 3 * 2 < 6 + 1
        (5, 2, 2, 1, "CEIL", 3),  # ceil gives 4, last window would start in the padding
        (7, 3, 2, 2, "CEIL", 5),  # pad > kernel // 2; clip triggers (ceil gives 6)
        (7, 1, 3, 0, "CEIL", 3),  # kernel < stride, windows skip pixels
        (8, 1, 3, 0, "CEIL", 4),  # ... and the last one starts past the input
        (8, 1, 3, 0, "FLOOR", 3),
        (2, 3, 2, 0, "CEIL", 1),  # kernel larger than the input: ceil(-0.5) = 0
        (2, 3, 2, 0, "FLOOR", 0),
        (2, 3, 1, 0, "CEIL", 0),  # ceil(-1.0) = -1
    ],
)
def test_pooled_size(in_size, kernel, stride, pad, mode, expected):
    assert pooled_size(in_size, kernel, stride, pad, ceil=mode == "CEIL") == expected
    ref = caffe_pooled_size_ref(in_size, kernel, stride, pad, mode, pad > 0)
    assert ref == expected


def test_pooled_size_clip_follows_either_pad():
    # Caffe clips both axes when any pad is set: W axis has pad 0 here.
    assert pooled_size(8, 1, 3, 0, ceil=True) == 4
    assert pooled_size(8, 1, 3, 0, ceil=True, clip=True) == 3


def test_lrn_window_is_asymmetric_for_even_sizes_like_caffe():
    # From test_lrn_even_size_window_is_asymmetric_like_caffe (the lrn half is in
    # test_lrn.py): Caffe's pre_pad is (size - 1) // 2, the rest of the window above.
    assert lrn_window(2) == (0, 1)
    assert lrn_window(4) == (1, 2)
    assert lrn_window(5) == (2, 2)


def test_torch_pool_matches():
    # From test_pool2d_uses_torch_when_identical (the pool2d half is in test_pooling.py).
    args = ((55, 55), (3, 3), (2, 2), (0, 0), True, (27, 27))
    assert torch_pool_matches(*args)
    assert torch_pool_matches((6, 6), (3, 3), (2, 2), (1, 1), True, (4, 4))
    assert not torch_pool_matches((8, 8), (1, 1), (3, 3), (0, 0), True, (4, 4))
    assert not torch_pool_matches((7, 7), (3, 3), (2, 2), (2, 2), True, (5, 5))
