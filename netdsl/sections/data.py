"""The ``data {}`` section, typed: one phase's :class:`DataConfig`.

A phase's data comes from

* the spec's ``data { ... }`` section: common fields, then the phase's ``train { ... }`` or
  ``test { ... }`` sub-block, whose fields replace the common ones (typed at the build
  stage: every error is a ``file:line:col`` diagnostic before torch is imported); or
* Caffe's data layers, for a ``train_val.prototxt``: a ``Data`` layer (an LMDB database,
  ``batch_size``, ``transform_param``) or an ``ImageData`` layer (a list file), each
  layer type saying how its examples are read (``LayerType.data_source``); converted when
  the runtime asks (:func:`phase_data`), so that ``netdsl shapes`` never refuses a net
  for data it would not read.

Whether the data is where the config says is the runtime's question (it reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import syntax as s
from ..diagnostics import DataError, Span, SpecError, did_you_mean
from ..fields import FieldError, convert, field_spans
from ..layers import INPUT_TYPE

if TYPE_CHECKING:
    from ..ir import Layer, Net

__all__ = ["SOURCE_KINDS", "DataConfig", "PhaseData", "data_section", "missing_data",
           "phase_data"]

#: The data sources, and what each one's ``path`` names ("" : it takes none). The
#: runtime's ``netdsl.runtime.data.SOURCES`` reads each.
SOURCE_KINDS: dict[str, str] = {
    "digits": "",
    "folder": "image folder",
    "list": "list file",
    "lmdb": "LMDB database",
    "synthetic": "",
}


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
    reduced_decode: bool = field(
        default=True,
        metadata=_doc("decode JPEGs 2x+ the resize size reduced in the DCT domain (faster)"),
    )
    workers: int = field(
        default=-1, metadata=_doc("processes decoding samples; -1: one per core but one, 0: none")
    )
    num_samples: int = field(default=1000, metadata=_doc("synthetic: how many samples"))
    num_classes: int = field(default=10, metadata=_doc("synthetic: how many classes"))

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            hint = did_you_mean(self.source, SOURCE_KINDS)
            raise FieldError(
                f"unknown data source '{self.source}' (sources: {', '.join(SOURCE_KINDS)})"
                + (f"; {hint}" if hint else ""), "source")
        checks: tuple[tuple[bool, str, str], ...] = (
            (self.batch_size < 1, "batch_size",
             f"batch_size must be positive, got {self.batch_size}"),
            (len(self.resize) > 2 or any(s < 1 for s in self.resize), "resize",
             f"resize takes [S] or [H, W] with positive sizes, got {self.resize}"),
            (self.crop < 0, "crop", f"crop must be positive (or 0 for none), got {self.crop}"),
            (bool(self.mean_value and self.mean_file), "mean_file",
             "give mean_value or mean_file, not both"),
            (self.pca_lighting < 0, "pca_lighting",
             f"pca_lighting is a standard deviation, got {self.pca_lighting}"),
            (len(self.pca_eigval) not in (0, 3), "pca_eigval",
             f"pca_eigval takes 3 values, got {len(self.pca_eigval)}"),
            (len(self.pca_eigvec) not in (0, 9), "pca_eigvec",
             f"pca_eigvec takes 9 values (3x3, row-major), got {len(self.pca_eigvec)}"),
            (self.channels not in (0, 1, 3), "channels",
             f"channels must be 1 or 3 (or 0: the net's), got {self.channels}"),
            (self.test_crops not in (1, 10), "test_crops",
             f"test_crops must be 1 or 10, got {self.test_crops}"),
            (self.test_crops == 10 and not self.crop, "test_crops",
             "test_crops 10 needs crop (the crops are taken at that size)"),
            (self.split not in ("", "train", "test", "all"), "split",
             f"split must be train, test or all, got '{self.split}'"),
            (self.workers < -1, "workers", f"workers must be -1 (automatic) or more, got "
             f"{self.workers}"),
            (self.num_samples < 1, "num_samples", "num_samples must be positive"),
            (self.num_classes < 1, "num_classes", "num_classes must be positive"),
        )
        for failed, name, message in checks:
            if failed:
                raise FieldError(message, name)



@dataclass(frozen=True)
class PhaseData:
    """One phase's data: the config, where it was written (the section or the layer), where
    its path was written, and which of the two it came from (``"section"``/``"layer"``)."""

    config: DataConfig
    span: Span | None
    path_span: Span | None
    origin: str
    #: a section made by ``--set data.*`` alone: the fields it sets (over a data layer's)
    flags: frozenset[str] | None = None


def data_section(block: s.Block | None, phase: str) -> PhaseData | None:
    """The phase's :class:`PhaseData` from a ``data {}`` section (``None``: no section)."""
    if block is None:
        return None
    cfg, path_span, given = _from_section(block, phase)
    flags = given if block.span.path.startswith("<--set") else None
    return PhaseData(cfg, block.span, path_span, "section", flags)


def phase_data(net: Net) -> PhaseData | None:
    """The net's data: its section's, else its first data layer's that the runtime can
    read (``None`` if neither). A layer whose data cannot be read so is a DataError.

    A section made by ``--set data.*`` alone, on a net with a data layer, changes that
    layer's data: ``--set data.source=synthetic`` keeps the layer's ``batch_size``,
    ``scale``... (where the layer's data can be read as a config)."""
    layer = next((lay for lay in net.layers if lay.kind.has_data_source), None)
    if net.data is not None:
        if net.data.flags is None or layer is None:
            return net.data
        try:
            base = _from_layer(layer)
        except DataError:
            return net.data
        given = {k: getattr(net.data.config, k) for k in net.data.flags}
        try:
            cfg = replace(base, **given)
        except FieldError as e:
            raise DataError(f"--set data.{e.field_name}: {e}", net.data.span, e.hint) from None
        where = net.data.path_span if "path" in net.data.flags else layer.field_spans.get(
            "source", layer.span)
        return PhaseData(cfg, net.data.span, where, "layer" if "path" not in given
                         else "section", net.data.flags)
    if layer is None:
        return None
    cfg = _from_layer(layer)
    return PhaseData(cfg, layer.span, layer.field_spans.get("source", layer.span), "layer")


def missing_data(net: Net, phase: str) -> DataError:
    """The error for a net that says nothing about the phase's data."""
    other = [lay for lay in net.layers
             if lay.kind.is_data and lay.kind.name != INPUT_TYPE]
    if other:
        lay = other[0]
        return DataError(
            f"netdsl cannot read the data of {lay.type} layer '{lay.name}'",
            lay.span,
            hint=f"add a data {{ ... }} section (sources: {', '.join(SOURCE_KINDS)})",
        )
    return DataError(
        f"net '{net.name or net.path}' says nothing about its {phase} data",
        Span(net.path),
        hint='add a data section, e.g. data { source: "folder"  path: "images"  '
        "batch_size: 64 }, or for a quick try data { source: \"digits\" } "
        f"(sources: {', '.join(SOURCE_KINDS)})",
    )


def _from_section(block: s.Block, phase: str
                  ) -> tuple[DataConfig, Span | None, frozenset[str]]:
    """Common fields overridden by the phase's sub-block (lists are replaced, not joined)."""
    phase_items: tuple[s.Item, ...] = ()
    for f in block.items:
        if isinstance(f, s.Field) and f.key in ("train", "test"):
            if not isinstance(f.value, s.Block):
                raise SpecError(f"'{f.key}' in data must be a {{ ... }} block", f.value.span)
            if f.key == phase:
                phase_items += f.value.items
    common = tuple(
        i for i in block.items if not (isinstance(i, s.Field) and i.key in ("train", "test"))
    )
    given = {i.key for i in phase_items if isinstance(i, s.Field)}
    merged = tuple(i for i in common if not (isinstance(i, s.Field) and i.key in given))
    merged += phase_items
    cfg = convert(DataConfig, merged, "data", extra_names=("train", "test"))
    given_names = frozenset(i.key for i in merged if isinstance(i, s.Field))
    return cfg, field_spans(merged).get("path"), given_names


def _from_layer(layer: Layer) -> DataConfig:
    """A Caffe data layer (Data: an LMDB, ImageData: a list file) as a DataConfig."""
    try:
        fields = layer.kind.data_source(layer.params)
        assert fields is not None
        cfg = DataConfig(**fields)
    except FieldError as e:
        raise DataError(f"{layer.type} layer '{layer.name}' {e}",
                        layer.field_spans.get(e.field_name or "", layer.span), e.hint) from None
    except ValueError as e:
        raise DataError(f"{layer.type} layer '{layer.name}': {e}", layer.span) from None
    return cfg


