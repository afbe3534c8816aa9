"""Caffe's data tools: ``convert_imageset`` (images to an LMDB of ``Datum`` records) and
``compute_image_mean`` (the mean image of a database, as a ``.binaryproto``).

``netdsl data convert IMAGES|LIST -o OUT.lmdb`` reads a folder of class folders or a Caffe
list file (``path label`` lines), optionally resized (``--resize 256x256``, OpenCV's
bilinear as ``convert_imageset -resize_height -resize_width``) and shuffled (seeded, so
the same call makes the same database), and writes one ``Datum`` per image under the key
``%08d_<path>``, as Caffe does: raw BGR pixels, or with ``--encoded`` the image file itself
(re-encoded as JPEG or PNG when resized). Images are decoded in worker processes; the
database is written in order, in one process, as LMDB wants.

``netdsl data mean SOURCE -o mean.binaryproto`` averages every image of an LMDB, a folder
or a list file (all of one size) in float64, and writes Caffe's ``BlobProto`` (1 x C x H x
W); the per-channel means are returned too, as Caffe prints them.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.caffe_pb import BlobProto, Datum
from netdsl.diagnostics import DataError, Span
from netdsl.files import checked_output, write_output

from .base import ImageFileSource, read_image
from .folder import FolderSource
from .listfile import ListSource
from .sources import make_source

__all__ = ["ConvertOptions", "compute_mean", "convert_imageset", "image_list"]

Progress = Callable[[int, int], None]  # (done, total)

#: LMDB's map is virtual: reserve a terabyte, as Caffe does, and use what the data needs.
_MAP_SIZE = 1 << 40
_CHUNK = 64


@dataclass(frozen=True)
class ConvertOptions:
    """``convert_imageset``'s switches."""

    resize: tuple[int, int] | None = None  # (height, width)
    encoded: bool = False
    encode_type: str = ""  # "jpg" or "png" for a re-encoded image; "" keeps the file's
    gray: bool = False
    shuffle: bool = False
    seed: int = 0


def image_list(source: str, root: str = "") -> ImageFileSource:
    """The images of a folder of class folders or a list file, with their labels."""
    if os.path.isdir(source):
        return FolderSource(source, channels=3)
    if os.path.isfile(source):
        return ListSource(source, root, channels=3)
    raise DataError(f"no such folder or list file: {source}", Span(source),
                    "give a folder of class folders, or a file of 'path label' lines")


def _datum(job: tuple[str, int, ConvertOptions]) -> bytes:
    """One image as a serialised Datum (run in a worker process)."""
    path, label, opt = job
    channels = 1 if opt.gray else 3
    if opt.encoded and opt.resize is None and not opt.encode_type:
        raw = Path(path).read_bytes()
        read_image(path, channels)  # a file that cannot be decoded is refused here
        return _serialise(Datum(channels=channels, label=label, data=raw, encoded=True))
    img = read_image(path, channels)  # (C, H, W) uint8 RGB or grey
    if opt.resize is not None:
        img = _resize(img, opt.resize)
    c, h, w = img.shape
    if opt.encoded:
        from PIL import Image

        buf = io.BytesIO()
        fmt = "PNG" if (opt.encode_type or Path(path).suffix.lstrip(".")).lower() == "png" \
            else "JPEG"
        hwc = img[0] if c == 1 else img.transpose(1, 2, 0)
        Image.fromarray(hwc).save(buf, format=fmt, quality=95)
        return _serialise(Datum(channels=c, label=label, data=buf.getvalue(), encoded=True))
    bgr = img if c == 1 else img[::-1]  # Caffe's pixels are OpenCV's: BGR
    return _serialise(Datum(channels=c, height=h, width=w, label=label,
                            data=np.ascontiguousarray(bgr).tobytes()))


def _serialise(message: Any) -> bytes:
    out: bytes = message.SerializeToString()
    return out


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import torch

    from .transforms import Resize

    return Resize(size).batch(torch.from_numpy(img)[None])[0].numpy()


def convert_imageset(source: str, output: str, options: ConvertOptions = ConvertOptions(), *,
                     root: str = "", workers: int = 0,
                     progress: Progress | None = None) -> int:
    """Write the images of ``source`` to the LMDB ``output``; returns how many."""
    lmdb = _lmdb()
    images = image_list(source, root)
    jobs = [(p, int(label), options) for p, label in zip(images.paths, images.labels(),
                                                          strict=True)]
    if options.shuffle:
        random.Random(options.seed).shuffle(jobs)
    if os.path.exists(output):
        raise DataError(f"{output} exists already; convert_imageset writes a new database",
                        Span(output), "remove it, or give another -o")
    checked_output(output, "the database")
    try:
        env = lmdb.open(output, map_size=_MAP_SIZE, subdir=True)
    except lmdb.Error as e:
        raise DataError(f"cannot create the database {output}: {e}", Span(output)) from None
    try:
        txn = env.begin(write=True)
        for k, datum in enumerate(_in_order(_datum, jobs, workers)):
            if k and k % 1000 == 0:  # Caffe commits every 1,000 records too
                txn.commit()
                txn = env.begin(write=True)
            txn.put(f"{k:08d}_{jobs[k][0]}".encode(), datum)
            if progress is not None:
                progress(k + 1, len(jobs))
        txn.commit()
    except BaseException as e:  # a half-written database is not kept (it was ours)
        env.close()
        shutil.rmtree(output, ignore_errors=True)
        if isinstance(e, lmdb.Error):
            raise DataError(f"writing the database {output} failed: {e}", Span(output),
                            "is the disk full?") from None
        raise
    env.close()
    return len(jobs)


def _in_order(fn: Callable[[tuple[str, int, ConvertOptions]], bytes],
              jobs: list[tuple[str, int, ConvertOptions]], workers: int) -> Iterator[bytes]:
    if workers <= 0:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        yield from pool.map(fn, jobs, chunksize=_CHUNK)


def _init_worker() -> None:
    """A forked worker must not use the parent's OpenMP thread pool (libgomp hangs in a
    child forked after the parent used it): one thread, as torch's own data workers."""
    import gc

    import torch

    gc.freeze()
    torch.set_num_threads(1)


def _lmdb() -> Any:
    try:
        import lmdb
    except ImportError:
        raise DataError("writing an LMDB database needs the 'lmdb' package", None,
                        "pip install lmdb") from None
    return lmdb


def compute_mean(source: str, output: str | None = None, *, root: str = "",
                 progress: Progress | None = None) -> np.ndarray:
    """The mean image ``(C, H, W)`` of an LMDB, a folder or a list file, in the order its
    channels are stored (BGR for an LMDB, as Caffe's); written as a ``.binaryproto``."""
    if output is not None:
        checked_output(output, "the mean image")
    src = (make_source("lmdb", path=source)
           if os.path.isfile(os.path.join(source, "data.mdb")) else image_list(source, root))
    total: np.ndarray | None = None
    n = len(src)
    for i in range(n):
        img, _ = src.get(i)
        if total is None:
            total = np.zeros(img.shape, dtype=np.float64)
        elif img.shape != total.shape:
            raise DataError(
                f"{src.describe(i)} is {'x'.join(map(str, img.shape))}, the first image "
                f"{'x'.join(map(str, total.shape))}: a mean image needs one size",
                Span(source), "resize the images to one size first (data convert --resize)")
        total += img
        if progress is not None:
            progress(i + 1, n)
    if total is None:
        raise DataError(f"{source} holds no images", Span(source))
    mean = (total / n).astype(np.float32)
    if output is not None:
        c, h, w = mean.shape
        blob = BlobProto(num=1, channels=c, height=h, width=w, data=mean.ravel().tolist())
        write_output(output, blob.SerializeToString(), "the mean image")
    return mean
