"""The interface every data source implements, image decoding shared by the sources, and
the base of the sources that read image files (folder and list).

A source is a random-access sequence of ``(image, label)`` samples:

* ``len(source)`` -- how many samples;
* ``source.get(i)`` -- sample ``i`` as ``(array, label)``, the array ``(C, H, W)`` and
  either ``uint8`` (pixel values 0..255) or ``float32``;
* ``source.label_names`` -- class names by label, or ``None`` when the data has none.

Sources derived from :class:`Source` also say how to read their pixels (``channel_order``,
``pixel_max``), name a sample in error messages (``describe``) and may offer the whole
data set as one array (``all_images`` / ``labels``), which lets the loader precompute it.
Objects that only have ``__len__``, ``get`` and ``label_names`` work too: the loader falls
back to the defaults of :class:`Source` for everything else.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np

from netdsl.diagnostics import DataError
from netdsl.files import read_bytes

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFileSource",
    "SampleSource",
    "Source",
    "decode_image",
    "read_image",
]

#: File name endings recognised as images (as torchvision's ImageFolder; any case).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


@runtime_checkable
class SampleSource(Protocol):
    """The minimal interface the loader needs."""

    label_names: tuple[str, ...] | None

    def __len__(self) -> int: ...

    def get(self, i: int) -> tuple[np.ndarray, int]: ...


class BadImage(DataError):
    """An image file that cannot be read or decoded (missing, corrupt, truncated, not an
    image, not a regular file): ``--on-bad-image skip`` replaces it."""


class Source:
    """Base class with the optional parts of the interface, at their defaults."""

    #: Class names by label, or None.
    label_names: tuple[str, ...] | None = None
    #: "RGB", "BGR" or "L" (one grey channel): what the channels of ``get`` hold.
    channel_order: str = "RGB"
    #: The value of a full-intensity pixel: 255 for uint8 images, 1 for 0..1 floats.
    #: PCA lighting, whose eigenvalues are for 0..1 RGB, scales its noise by it.
    pixel_max: float = 255.0

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, i: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    @property
    def native_channels(self) -> int:
        """How many channels the images ``get`` returns have."""
        return 1 if self.channel_order == "L" else 3

    def describe(self, i: int) -> str:
        """How error messages name sample ``i`` (a file path where there is one)."""
        return f"sample {i}"

    def all_images(self) -> np.ndarray | None:
        """The whole data set as one ``(N, C, H, W)`` array, for sources held in memory."""
        return None

    def labels(self) -> np.ndarray | None:
        """All labels as an int64 array, where known without decoding the samples."""
        return None

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return i % n


class ImageFileSource(Source):
    """Image files and their labels, decoded with Pillow to ``(C, H, W)`` uint8: what the
    folder and list sources share. A subclass calls ``__init__`` first, then finds its
    files and sets ``paths`` and ``_labels``."""

    paths: list[str]
    _labels: np.ndarray

    #: the smallest (height, width) the images are used at (the pipeline's resize): a
    #: JPEG at least twice as large is decoded straight to about that size (DCT scaling)
    min_size: tuple[int, int] | None = None

    def __init__(self, channels: int, bgr: bool) -> None:
        if channels not in (1, 3):
            raise DataError(f"images can be decoded to 1 or 3 channels, not {channels}")
        self.channels = channels
        self.bgr = bgr and channels == 3
        self.channel_order = "L" if channels == 1 else ("BGR" if self.bgr else "RGB")

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> tuple[np.ndarray, int]:
        i = self._check_index(i)
        return (read_image(self.paths[i], self.channels, self.bgr, self.min_size),
                int(self._labels[i]))

    def describe(self, i: int) -> str:
        return self.paths[i]

    def labels(self) -> np.ndarray:
        return self._labels


def decode_image(data: bytes | str | os.PathLike[str], channels: int, what: str,
                 min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image file (a path, or its bytes) to ``(C, H, W)`` uint8, RGB or grey.

    ``channels`` is 3 (colour; grey and palette images are expanded, alpha is dropped) or 1
    (grey). ``what`` names the image in the :class:`DataError` raised when it cannot be read.

    JPEGs are decoded with libjpeg-turbo through simplejpeg (about 1.4x Pillow's speed on
    500x375 photos); other formats, and JPEGs simplejpeg cannot read (CMYK, progressive
    oddities), with Pillow. With ``min_size`` (height, width), a JPEG at least twice that
    size in both sides is decoded at 1/2, 1/4 or 1/8 of its size in the DCT domain, the
    largest reduction that stays at least ``min_size`` (a 2000x1500 photo for a 256 resize:
    about 7x faster); the resize that follows then differs from resizing the full decode by
    a fraction of a grey level on average (a test states how much).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    try:
        raw = data if isinstance(data, bytes) else read_bytes(data, "image", "image")
        arr = _decode_jpeg(raw, channels, min_size) if raw[:2] == b"\xff\xd8" else None
        if arr is None:
            arr = _decode_pillow(raw, channels, min_size)
    except DataError as e:  # missing, a folder, a FIFO, too large, unreadable
        raise BadImage(e.message, hint=e.hint) from None
    # Pillow's plugins raise OSError, ValueError, SyntaxError, struct.error, zlib.error,
    # DecompressionBombError... for broken files: every one of them is the user's data.
    except Exception as e:
        why = ("not an image file Pillow can identify" if type(e).__name__ ==
               "UnidentifiedImageError" else f"{type(e).__name__}: {e}")
        raise BadImage(
            f"cannot read image {what}: {why}",
            hint="the file is not an image Pillow can decode (corrupt, truncated or "
            "another format under an image name?)",
        ) from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def _reduction(h: int, w: int, min_size: tuple[int, int] | None) -> int:
    """The DCT-domain reduction (1, 2, 4 or 8) for an ``h`` x ``w`` JPEG."""
    if min_size is None:
        return 1
    factor = 1
    while factor < 8 and h // (2 * factor) >= min_size[0] and w // (2 * factor) >= min_size[1]:
        factor *= 2
    return factor


def _decode_jpeg(raw: bytes, channels: int, min_size: tuple[int, int] | None
                 ) -> np.ndarray | None:
    """simplejpeg's decode, ``None`` where it is not installed or cannot read the file."""
    try:
        import simplejpeg
    except ImportError:
        return None
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(raw)
        f = _reduction(h, w, min_size)
        sizes = {} if f == 1 else {"min_height": -(-h // f), "min_width": -(-w // f)}
        out: np.ndarray = simplejpeg.decode_jpeg(
            raw, colorspace="RGB" if channels == 3 else "GRAY", **sizes)
    except ValueError:  # not a JPEG libjpeg-turbo reads here: Pillow says why
        return None
    return out[..., 0] if out.ndim == 3 and channels == 1 else out


def _decode_pillow(raw: bytes, channels: int, min_size: tuple[int, int] | None
                   ) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        if im.format == "JPEG" and min_size is not None:
            f = _reduction(im.height, im.width, min_size)
            if f > 1:
                im.draft(im.mode, (im.width // f, im.height // f))  # Pillow: scale <= asked
        return np.asarray(im.convert("RGB" if channels == 3 else "L"))


def read_image(path: str | os.PathLike[str], channels: int = 3, bgr: bool = False,
               min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as ``(C, H, W)`` uint8; colour is RGB, or BGR (Caffe/OpenCV) if
    asked; ``min_size`` allows a decode reduced in the DCT domain (see ``decode_image``)."""
    arr = decode_image(path, channels, os.fspath(path), min_size)
    if bgr and arr.shape[0] == 3:
        arr = np.ascontiguousarray(arr[::-1])
    return arr
