"""The one registry of data sources: every ``source:`` kind of the data section
(``netdsl.sections.SOURCE_KINDS``) and how the runtime opens it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netdsl.diagnostics import DataError, did_you_mean
from netdsl.sections import DataConfig

from .base import ImageFileSource, Source
from .caffe_lmdb import LmdbSource
from .digits import DigitsSource
from .folder import FolderSource
from .listfile import ListSource
from .synthetic import SyntheticSource

__all__ = ["SOURCES", "SourceKind", "make_source", "open_source"]

#: ``open(cfg, phase, channels, (C, H, W))``: the source for a phase, its images decoded to
#: ``channels`` where it decodes, and the net's input shape.
Opener = Callable[[DataConfig, str, int, tuple[int, int, int]], Source]


@dataclass(frozen=True)
class SourceKind:
    """A source class and how a data config opens it."""

    cls: type[Source]
    open: Opener


def _images(source: ImageFileSource, cfg: DataConfig) -> ImageFileSource:
    """An image-file source that may decode JPEGs reduced to the resize's size."""
    if cfg.resize and cfg.reduced_decode:
        source.min_size = (cfg.resize[0], cfg.resize[-1])
    return source


SOURCES: dict[str, SourceKind] = {
    "digits": SourceKind(DigitsSource, lambda c, phase, ch, shape: DigitsSource(c.split or phase)),
    "folder": SourceKind(FolderSource, lambda c, phase, ch, shape: _images(
        FolderSource(c.path, ch, c.bgr), c)),
    "list": SourceKind(ListSource, lambda c, phase, ch, shape: _images(
        ListSource(c.path, c.root, ch, c.bgr), c)),
    "lmdb": SourceKind(LmdbSource, lambda c, phase, ch, shape: LmdbSource(c.path)),
    "synthetic": SourceKind(SyntheticSource, lambda c, phase, ch, shape: SyntheticSource(
        (ch, shape[1], shape[2]), c.num_classes, c.num_samples, seed=0,
        stream=int(phase != "train"))),
}


def make_source(kind: str, **options: Any) -> Source:
    """A source by kind, with the keyword options of its class.

    ``digits(split="train")``, ``folder(root, channels=3, bgr=False)``,
    ``list(path, root="", channels=3, bgr=False, check_files=True)``, ``lmdb(path)``,
    ``synthetic(shape, num_classes=10, num_samples=1000, seed=0, stream=0)``.
    """
    if kind not in SOURCES:
        raise DataError(
            f"unknown data source '{kind}'",
            hint=did_you_mean(kind, SOURCES) or f"the sources are {', '.join(SOURCES)}",
        )
    return SOURCES[kind].cls(**options)


def open_source(cfg: DataConfig, phase: str, channels: int,
                input_shape: tuple[int, int, int]) -> Source:
    """The source ``cfg`` names, for ``phase``."""
    return SOURCES[cfg.source].open(cfg, phase, channels, input_shape)
