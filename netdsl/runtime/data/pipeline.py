"""A phase's data pipeline: a ``DataConfig`` (``netdsl.sections``) wired to a net's input.

``build_loader(cfg, phase, input_shape, seed)`` turns the config into a source, a
:class:`~netdsl.runtime.data.transforms.Pipeline` and a :class:`~netdsl.runtime.data.loader.Loader`
that yields exactly the net's input shape, checking every size and channel count it can
before the first batch. The rules, in the order the transforms run:

1. decode: folder/list images to ``channels`` (1 grey, 3 colour; default the net's);
2. resize: ``[S]`` shorter side to S, ``[H, W]`` exactly; with no crop the result must be
   the net's input size, and ``[]`` means just that (so the 8x8 digits are scaled up to
   the net's input); with a crop, ``[]`` means no resizing;
3. one-channel data is replicated to fill a 3-channel input;
4. Caffe's DataTransformer: mean image / crop (random in TRAIN, centre or 10 crops in
   TEST) / mean values / scale / mirror (TRAIN) -- see ``transforms``;
5. PCA lighting (TRAIN).

Unlike Caffe, which mirrors test images at random too if ``mirror`` is set, the TEST
phase here is deterministic: mirror and lighting apply in TRAIN only, and mirrored views
in TEST come from ``test_crops: 10``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from netdsl.diagnostics import DataError, Span
from netdsl.sections import DataConfig

from .labels import LabelRange, check_labels
from .loader import Loader
from .sources import open_source
from .transforms import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    CenterCrop,
    Mirror,
    PCALighting,
    Pipeline,
    RandomCrop,
    ReplicateChannels,
    Resize,
    SubtractMean,
    TenCrop,
)

__all__ = ["build_loader", "load_mean_file", "resolve_workers"]


def load_mean_file(path: str | os.PathLike[str]) -> np.ndarray:
    """A mean image as ``(C, H, W)`` float32, from ``.npy`` or a Caffe ``.binaryproto``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"mean file not found: {path}")
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read mean file {path}: {e}") from None
    else:
        from google.protobuf.message import DecodeError

        from netdsl.caffe_pb import BlobProto

        blob = BlobProto()
        try:
            with open(path, "rb") as f:
                blob.ParseFromString(f.read())
        except (OSError, DecodeError) as e:
            raise DataError(
                f"cannot read mean file {path}: {e}",
                hint="mean files are .npy arrays or Caffe BlobProto (.binaryproto)",
            ) from None
        if blob.HasField("shape"):
            shape = tuple(int(d) for d in blob.shape.dim)
        else:
            shape = (blob.num, blob.channels, blob.height, blob.width)
        values = blob.data if len(blob.data) else blob.double_data
        if not shape or int(np.prod(shape)) != len(values) or len(values) == 0:
            raise DataError(
                f"mean file {path}: shape {shape} does not match its {len(values)} values"
            )
        arr = np.asarray(values, dtype=np.float32).reshape(shape)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"mean file {path} holds shape {arr.shape}; expected (C, H, W)")
    return np.ascontiguousarray(arr, dtype=np.float32)


def build_loader(
    cfg: DataConfig,
    phase: str,
    input_shape: tuple[int, int, int],
    seed: int,
    *,
    span: Span | None = None,
    workers: int | None = None,
    device: torch.device | str | None = None,
    cache_bytes: int = 1 << 30,
    rank: int = 0,
    world: int = 1,
    labels: LabelRange | None = None,
    on_bad_image: str = "skip",
    ten_crop_mirror: bool = True,
) -> Loader:
    """The loader for ``phase`` ("train" or "test") of a net whose input is ``(C, H, W)``.

    ``span`` (where the data block was written) is attached to the errors about the
    config itself; errors about files name the files. ``workers`` overrides the config's
    (``--workers``); ``device`` is where the batches are finished and delivered;
    ``cache_bytes`` bounds the inline fetch's cache of decoded images; ``rank`` of
    ``world`` processes takes its share of every global batch; ``labels``: the range the
    net takes (see :mod:`.labels`); ``on_bad_image``: ``"skip"`` an unreadable image (the
    next readable one takes its place) or ``"fail"``; ``ten_crop_mirror``: 10-crop testing
    (``test_crops: 10``) adds the mirrors of the 5 crops (10 views), else 5 views.
    """
    phase = phase.lower()
    if phase not in ("train", "test"):
        raise ValueError(f"phase must be 'train' or 'test', not {phase!r}")
    train = phase == "train"
    C, H, W = (int(s) for s in input_shape)

    def err(message: str, hint: str | None = None) -> DataError:
        return DataError(message, span, hint)

    channels = cfg.channels or (1 if C == 1 else 3)
    if channels not in (1, C):
        raise err(
            f"the images are decoded to {channels} channels, but the net's input has {C}",
            hint="set channels to 1 (grey) or 3 (colour) to match the net's input",
        )

    source = open_source(cfg, phase, channels, (C, H, W))
    native = source.native_channels
    if native not in (1, C):
        raise err(f"the data has {native} channels, but the net's input has {C}")
    replicate = ReplicateChannels(C) if native != C else None

    crop_t: RandomCrop | CenterCrop | TenCrop | None = None
    resize: Resize | None = None
    if cfg.crop:
        k = cfg.crop
        if (H, W) != (k, k):
            raise err(
                f"crop {k} makes {k}x{k} images, but the net's input is {H}x{W}",
                hint=f"crop to the input size ({H})" if H == W else None,
            )
        if cfg.resize:
            if min(cfg.resize) < k:
                raise err(f"resize {list(cfg.resize)} makes images smaller than the crop {k}")
            resize = Resize(cfg.resize)
        if train:
            crop_t = RandomCrop((k, k))
        elif cfg.test_crops == 10:
            crop_t = TenCrop((k, k), mirror=ten_crop_mirror)
        else:
            crop_t = CenterCrop((k, k))
    else:
        if len(cfg.resize) == 1:
            raise err(
                f"resize [{cfg.resize[0]}] keeps each image's aspect ratio, so the images would "
                "not all have the net's input size",
                hint=f"resize [{H}, {W}], or add a crop",
            )
        size = tuple(cfg.resize) or (H, W)
        if size != (H, W):
            raise err(
                f"resize {list(size)} but the net's input is {H}x{W}",
                hint="resize to the input size, or resize larger and crop",
            )
        resize = Resize((H, W))

    mean: SubtractMean | None = None
    if cfg.mean_value:
        if len(cfg.mean_value) not in (1, C):
            raise err(f"{len(cfg.mean_value)} mean values for a {C}-channel input")
        mean = SubtractMean(values=tuple(float(v) for v in cfg.mean_value))
    elif cfg.mean_file:
        image = load_mean_file(cfg.mean_file)
        if image.shape[0] != C:
            raise DataError(
                f"the mean image in {cfg.mean_file} has {image.shape[0]} channels, "
                f"the net's input {C}"
            )
        mean = SubtractMean(image=image)

    lighting: PCALighting | None = None
    if train and cfg.pca_lighting > 0:
        if C != 3:
            raise err(f"pca_lighting needs a 3-channel (colour) input, the net's has {C}")
        vec = cfg.pca_eigvec
        eigvec = tuple(tuple(vec[3 * r : 3 * r + 3]) for r in range(3)) if vec else IMAGENET_EIGVEC
        lighting = PCALighting(
            std=cfg.pca_lighting,
            eigval=tuple(cfg.pca_eigval) or IMAGENET_EIGVAL,
            eigvec=eigvec,
            pixel_scale=float(getattr(source, "pixel_max", 255.0)) * cfg.scale,
            bgr=getattr(source, "channel_order", "RGB") == "BGR",
        )

    pipeline = Pipeline(
        resize=resize,
        replicate=replicate,
        mean=mean,
        scale=cfg.scale,
        crop=crop_t,
        mirror=Mirror(0.5) if train and cfg.mirror else None,
        lighting=lighting,
    )
    where = Span(cfg.path) if cfg.path else span
    known = labels is not None and check_labels(source, labels, where)
    return Loader(
        source,
        pipeline,
        cfg.batch_size,
        shuffle=train and cfg.shuffle,
        seed=seed,
        out_shape=(C, H, W),
        workers=resolve_workers(cfg.workers if workers is None else workers),
        device=device,
        cache_bytes=cache_bytes,
        rank=rank,
        world=world,
        labels=None if known else labels,
        on_bad_image=on_bad_image,
    )


def resolve_workers(workers: int) -> int:
    """``-1`` (automatic): one worker process per core but one (the main process feeds the
    device), at most 16; else the number given."""
    if workers >= 0:
        return workers
    return max(0, min(16, (os.cpu_count() or 1) - 1))
