"""JPEG decoding: libjpeg-turbo (simplejpeg) gives Pillow's pixels exactly, and a large
photo decoded reduced in the DCT domain, then resized, differs from a full decode then
resize by no more than the choice of resize filter does."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.runtime.data.base import _decode_pillow, decode_image
from netdsl.runtime.data.transforms import Resize


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """scikit-learn's two sample photos as 1707x1280 JPEGs (an ImageNet photo's size)."""
    from sklearn.datasets import load_sample_images

    out = []
    for img in load_sample_images().images:
        buf = io.BytesIO()
        Image.fromarray(img).resize((1707, 1280), Image.BICUBIC).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def test_the_fast_decoder_gives_pillows_pixels(photos: list[bytes]) -> None:
    pytest.importorskip("simplejpeg")
    for raw in photos:
        ours = decode_image(raw, 3, "photo")
        pillow = _decode_pillow(raw, 3, None).transpose(2, 0, 1)
        np.testing.assert_array_equal(ours, pillow)
        grey = decode_image(raw, 1, "photo")
        assert grey.shape == (1, 1280, 1707)


def test_reduced_decode_then_resize_matches_a_full_decode(photos: list[bytes]) -> None:
    resize, smooth = Resize((256,)), Resize((256,), antialias=True)
    for raw in photos:
        full = torch.from_numpy(decode_image(raw, 3, "photo"))[None]
        reduced = torch.from_numpy(decode_image(raw, 3, "photo", (256, 256)))[None]
        assert reduced.shape[-2:] == (320, 427)  # 1/4 in the DCT domain, still >= 256
        got = resize.batch(reduced)[0].numpy()
        plain = resize.batch(full)[0].numpy()  # OpenCV-style bilinear, no antialiasing
        smoothed = smooth.batch(full)[0].numpy()
        assert got.shape == plain.shape == (3, 256, 341)
        # against an antialiased resize of the full photo: within a couple of grey levels
        assert np.abs(got.astype(float) - smoothed).mean() < 2.5
        assert _psnr(got, smoothed) > 35
        # against the plain bilinear resize: as close as the antialiased resize itself is
        assert _psnr(got, plain) > _psnr(smoothed, plain) - 1.0


def test_no_reduction_below_twice_the_size(photos: list[bytes]) -> None:
    raw = photos[0]
    assert decode_image(raw, 3, "photo", (700, 900)).shape == (3, 1280, 1707)
    assert decode_image(raw, 3, "photo", (600, 800)).shape == (3, 640, 854)
    assert decode_image(raw, 3, "photo", (10, 10)).shape == (3, 160, 214)  # at most 1/8


def test_pillow_reduces_too_when_the_fast_decoder_cannot(photos: list[bytes]) -> None:
    reduced = _decode_pillow(photos[0], 3, (256, 256))
    assert reduced.shape == (320, 427, 3)
    full = _decode_pillow(photos[0], 3, None)
    assert full.shape == (1280, 1707, 3)
