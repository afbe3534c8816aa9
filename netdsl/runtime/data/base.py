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
        return read_image(self.paths[i], self.channels, self.bgr), int(self._labels[i])

    def describe(self, i: int) -> str:
        return self.paths[i]

    def labels(self) -> np.ndarray:
        return self._labels


def decode_image(data: bytes | str | os.PathLike[str], channels: int, what: str) -> np.ndarray:
    """Decode an image file (a path, or its bytes) to ``(C, H, W)`` uint8, RGB or grey.

    ``channels`` is 3 (colour; grey and palette images are expanded, alpha is dropped) or 1
    (grey). ``what`` names the image in the :class:`DataError` raised when it cannot be read.
    """
    import io

    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        with Image.open(src) as im:
            arr = np.asarray(im.convert("RGB" if channels == 3 else "L"))
    except FileNotFoundError:
        raise DataError(f"image not found: {what}") from None
    except IsADirectoryError:
        raise DataError(f"expected an image file, found a folder: {what}") from None
    except PermissionError:
        raise DataError(f"cannot read image {what}: permission denied") from None
    # Pillow's plugins raise OSError, ValueError, SyntaxError, struct.error, zlib.error,
    # DecompressionBombError... for broken files: every one of them is the user's data.
    except Exception as e:
        raise DataError(
            f"cannot read image {what}: {type(e).__name__}: {e}",
            hint="the file is not an image Pillow can decode (corrupt, truncated or "
            "another format under an image name?)",
        ) from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike[str], channels: int = 3, bgr: bool = False) -> np.ndarray:
    """Read an image file as ``(C, H, W)`` uint8; colour is RGB, or BGR (Caffe/OpenCV) if asked."""
    arr = decode_image(path, channels, os.fspath(path))
    if bgr and arr.shape[0] == 3:
        arr = np.ascontiguousarray(arr[::-1])
    return arr
