"""A phase's data pipeline as a config (``DataConfig``), and wiring it to a net's input.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netdsl.diagnostics import DataError, Span, did_you_mean

from .base import Source
from .caffe_lmdb import LmdbSource
from .digits import DigitsSource
from .folder import FolderSource
from .listfile import ListSource
from .loader import Loader
from .synthetic import SyntheticSource
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

__all__ = ["DataConfig", "SOURCE_KINDS", "build_loader", "load_mean_file", "make_source"]

SOURCE_KINDS: tuple[str, ...] = ("digits", "folder", "list", "lmdb", "synthetic")
_PATH_KINDS = {"folder": "image folder", "list": "list file", "lmdb": "LMDB database"}


def _doc(text: str) -> dict[str, Any]:
    return {"doc": text}


@dataclass(frozen=True)
class DataConfig:
    """Where one phase's samples come from and how they are transformed."""

    source: str = field(
        default="digits", metadata=_doc("where samples come from: " + ", ".join(SOURCE_KINDS))
    )
    path: str = field(
        default="",
        metadata=_doc("folder: the class-folder root; list: the list file; lmdb: the database"),
    )
    root: str = field(
        default="", metadata=_doc("list: folder the image paths are relative to (root_folder)")
    )
    batch_size: int = field(default=64, metadata=_doc("samples per batch"))
    shuffle: bool = field(
        default=True, metadata=_doc("reshuffle the samples every epoch (TRAIN; TEST is in order)")
    )
    resize: tuple[int, ...] = field(
        default=(),
        metadata=_doc("[S]: shorter side to S; [H, W]: exactly; []: to the input unless cropping"),
    )
    crop: int = field(
        default=0,
        metadata=_doc("side of the square crop: random in TRAIN, centred in TEST; 0: none"),
    )
    mirror: bool = field(
        default=False, metadata=_doc("flip images left-right with probability 0.5 (TRAIN)")
    )
    mean_value: tuple[float, ...] = field(
        default=(),
        metadata=_doc("subtracted per channel, in the data's channel order; one value: all"),
    )
    mean_file: str = field(
        default="",
        metadata=_doc("mean image (.npy or Caffe .binaryproto) of the uncropped size"),
    )
    scale: float = field(
        default=1.0, metadata=_doc("pixels are multiplied by it after subtracting the mean")
    )
    pca_lighting: float = field(
        default=0.0, metadata=_doc("std of AlexNet's PCA colour noise (0.1 in the paper; TRAIN)")
    )
    pca_eigval: tuple[float, ...] = field(
        default=(), metadata=_doc("3 eigenvalues of 0..1 RGB pixels for pca_lighting (ImageNet's)")
    )
    pca_eigvec: tuple[float, ...] = field(
        default=(),
        metadata=_doc("3x3 eigenvectors, row-major, one per column, for pca_lighting (ImageNet's)"),
    )
    channels: int = field(
        default=0, metadata=_doc("decode images to 1 (grey) or 3 (colour) channels; 0: the net's")
    )
    bgr: bool = field(
        default=False, metadata=_doc("decode folder/list images to BGR, as Caffe's ImageData")
    )
    test_crops: int = field(
        default=1, metadata=_doc("TEST: 1 centre crop, or 10 (corners, centre, mirrors) averaged")
    )
    split: str = field(
        default="", metadata=_doc("digits: train, test or all; default: the phase's split")
    )
    num_samples: int = field(default=1000, metadata=_doc("synthetic: how many samples"))
    num_classes: int = field(default=10, metadata=_doc("synthetic: how many classes"))

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            hint = did_you_mean(self.source, SOURCE_KINDS)
            raise ValueError(
                f"unknown data source '{self.source}' (sources: {', '.join(SOURCE_KINDS)})"
                + (f"; {hint}" if hint else "")
            )
        if self.source in _PATH_KINDS and not self.path:
            raise ValueError(f"source {self.source} needs path (the {_PATH_KINDS[self.source]})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if len(self.resize) > 2 or any(s < 1 for s in self.resize):
            raise ValueError(f"resize takes [S] or [H, W] with positive sizes, got {self.resize}")
        if self.crop < 0:
            raise ValueError(f"crop must be positive (or 0 for none), got {self.crop}")
        if self.mean_value and self.mean_file:
            raise ValueError("give mean_value or mean_file, not both")
        if self.pca_lighting < 0:
            raise ValueError(f"pca_lighting is a standard deviation, got {self.pca_lighting}")
        if len(self.pca_eigval) not in (0, 3):
            raise ValueError(f"pca_eigval takes 3 values, got {len(self.pca_eigval)}")
        if len(self.pca_eigvec) not in (0, 9):
            raise ValueError(
                f"pca_eigvec takes 9 values (3x3, row-major), got {len(self.pca_eigvec)}"
            )
        if self.channels not in (0, 1, 3):
            raise ValueError(f"channels must be 1 or 3 (or 0: the net's), got {self.channels}")
        if self.test_crops not in (1, 10):
            raise ValueError(f"test_crops must be 1 or 10, got {self.test_crops}")
        if self.test_crops == 10 and not self.crop:
            raise ValueError("test_crops 10 needs crop (the crops are taken at that size)")
        if self.split not in ("", "train", "test", "all"):
            raise ValueError(f"split must be train, test or all, got '{self.split}'")
        if self.num_samples < 1 or self.num_classes < 1:
            raise ValueError("num_samples and num_classes must be positive")


def make_source(kind: str, **options: Any) -> Source:
    """A source by kind, with the keyword options of its class.

    ``digits(split="train")``, ``folder(root, channels=3, bgr=False)``,
    ``list(path, root="", channels=3, bgr=False, check_files=True)``, ``lmdb(path)``,
    ``synthetic(shape, num_classes=10, num_samples=1000, seed=0, stream=0)``.
    """
    factories: dict[str, Any] = {
        "digits": DigitsSource,
        "folder": FolderSource,
        "list": ListSource,
        "lmdb": LmdbSource,
        "synthetic": SyntheticSource,
    }
    if kind not in factories:
        raise DataError(
            f"unknown data source '{kind}'",
            hint=did_you_mean(kind, SOURCE_KINDS) or f"the sources are {', '.join(SOURCE_KINDS)}",
        )
    return factories[kind](**options)


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
) -> Loader:
    """The loader for ``phase`` ("train" or "test") of a net whose input is ``(C, H, W)``.

    ``span`` (where the data block was written) is attached to the errors about the
    config itself; errors about files name the files.
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

    source: Source
    if cfg.source == "digits":
        source = DigitsSource(cfg.split or phase)
        native = 1
    elif cfg.source == "folder":
        source, native = FolderSource(cfg.path, channels, cfg.bgr), channels
    elif cfg.source == "list":
        source, native = ListSource(cfg.path, cfg.root, channels, cfg.bgr), channels
    elif cfg.source == "lmdb":
        lmdb_source = LmdbSource(cfg.path)
        source, native = lmdb_source, int(lmdb_source.shape[0])
    else:
        source = SyntheticSource(
            (channels, H, W), cfg.num_classes, cfg.num_samples, seed=0, stream=int(not train)
        )
        native = channels
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
            crop_t = TenCrop((k, k))
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
    return Loader(
        source,
        pipeline,
        cfg.batch_size,
        shuffle=train and cfg.shuffle,
        seed=seed,
        out_shape=(C, H, W),
    )
