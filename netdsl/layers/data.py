"""Input and Caffe's data layers: their tops are the net's inputs.

Shapes come from the layer's own params where Caffe could know them (Input, MemoryData,
DummyData, ImageData with new_height/new_width or crop_size); a layer that reads its
shape from a database (Data, HDF5Data) needs ``--input NAME=C,H,W``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..fields import CaffeEnum, FieldError, doc
from . import register
from .base import Arity, LayerType, P, Role, Shape, ShapeContext


@dataclass(frozen=True)
class Transform:
    """Caffe's TransformationParameter (``transform_param``)."""

    scale: float = field(default=1.0, metadata=doc("multiply pixels by this after the mean"))
    mirror: bool = field(default=False, metadata=doc("random horizontal flips"))
    crop_size: int = field(default=0, metadata=doc("random (train) or centre (test) crop side"))
    mean_file: str = field(default="", metadata=doc("mean image (binaryproto)"))
    mean_value: tuple[float, ...] = field(default=(), metadata=doc("per-channel mean"))
    force_color: bool = field(default=False, metadata=doc("decode as 3 channels"))
    force_gray: bool = field(default=False, metadata=doc("decode as 1 channel"))


class DataLayer(LayerType[P]):
    """Base of the types whose tops are the net's inputs: no bottoms and no kernel (the
    compiled net is fed those tops by its caller)."""

    bottoms = Arity.exact(0)
    role = Role.INPUT

    def batch_size(self, p: P) -> int:
        return int(getattr(p, "batch_size", 0))


def _caffe_transform(p: DataParams | ImageDataParams) -> dict[str, Any]:
    """The data-section fields of a Caffe data layer's transform_param (and the
    deprecated copies of them in the layer's own params)."""
    t = p.transform
    if not p.source:
        raise FieldError("has no source", "source")
    if p.batch_size < 1:
        raise FieldError(f"needs batch_size >= 1, got {p.batch_size}", "batch_size")
    return {
        "path": p.source,
        "batch_size": p.batch_size,
        "crop": t.crop_size or p.crop_size,
        "mirror": t.mirror or p.mirror,
        "scale": t.scale if t.scale != 1.0 else p.scale,
        "mean_value": tuple(t.mean_value),
        "mean_file": t.mean_file or p.mean_file,
        "channels": 3 if t.force_color else 1 if t.force_gray else 0,
    }


def _with_batch(batch: int, chw: Shape) -> Shape:
    return (batch, *chw)


def _input_override(ctx: ShapeContext, top: str) -> Shape | None:
    given = ctx.inputs.get(top)
    return None if given is None else _with_batch(ctx.batch, given)


@dataclass(frozen=True)
class InputParams:
    shape: tuple[tuple[int, ...], ...] = field(
        default=(), metadata=doc("per-example shape of each top, e.g. [3, 227, 227]")
    )
    batch: int = field(
        default=0, metadata=doc("batch size written in the spec (0: from elsewhere)")
    )
    exact: bool = field(
        default=False, metadata=doc("shape is the whole blob's (Caffe's form): no batch added")
    )


@register
class Input(DataLayer[InputParams]):
    """Declares input blobs and their shapes (Caffe InputLayer, `input:` / `input_dim:`).

    A shape is per example and the batch goes in front, unless ``exact``: then it is the
    blob's whole shape, as Caffe writes it (a Caffe file's Input whose first dimension
    is not the net's batch, e.g. an LSTM's T x N x F sequence or 1 x N x H state).
    """

    caffe_names = ("INPUT",)
    tops = Arity(1)
    Params = InputParams

    def batch_size(self, p: InputParams) -> int:
        return p.batch

    def shape(
        self, p: InputParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        shapes = p.shape
        if len(shapes) not in (1, len(ctx.tops)):
            raise ctx.error(
                f"{len(ctx.tops)} tops need 1 or {len(ctx.tops)} shapes, got {len(shapes)}", "shape"
            )
        out = []
        for i, top in enumerate(ctx.tops):
            given = _input_override(ctx, top)
            if given is not None:
                out.append(given)
                continue
            if not shapes:
                hint = f"add shape: [C, H, W] or --input {top}=C,H,W"
                raise ctx.error(f"no shape for '{top}'", hint=hint)
            s = shapes[i if len(shapes) > 1 else 0]
            if any(d < 1 for d in s):
                raise ctx.error(f"shape {list(s)} has a dimension below 1", "shape")
            out.append(s if p.exact else _with_batch(ctx.batch, s))
        return tuple(out)


class DB(CaffeEnum):
    """DataParameter.DB (BVLC caffe.proto). ``backend`` stays a word (read as given, to
    say which databases netdsl cannot read) and reads these numbers."""

    LEVELDB = 0
    LMDB = 1


@dataclass(frozen=True)
class DataParams:
    source: str = field(default="", metadata=doc("database path (LMDB or LevelDB)"))
    batch_size: int = field(default=0, metadata=doc("examples per batch"))
    backend: str = field(default="LEVELDB", metadata=doc("LMDB or LEVELDB", numbers=DB))
    rand_skip: int = field(default=0, metadata=doc("skip up to this many examples at start"))
    prefetch: int = field(default=4, metadata=doc("batches to prefetch"))
    scale: float = field(default=1.0, metadata=doc("deprecated: use transform"))
    mean_file: str = field(default="", metadata=doc("deprecated: use transform"))
    crop_size: int = field(default=0, metadata=doc("deprecated: use transform"))
    mirror: bool = field(default=False, metadata=doc("deprecated: use transform"))
    transform: Transform = field(default=Transform(), metadata=doc("preprocessing"))


def _data_shape(ctx: ShapeContext, known: Shape | None, stored_in: str = "") -> tuple[Shape, ...]:
    """The data top, from --input, else from ``known`` (the C, H, W the params give), else
    an error saying the shape is ``stored_in`` the data; then the label top, (N,), if any."""
    top = ctx.tops[0]
    data = _input_override(ctx, top)
    if data is None and known is not None:
        data = _with_batch(ctx.batch, known)
    if data is None:
        raise ctx.error(
            f"the shape of '{top}' is stored in the {stored_in}, which shapes does not read",
            hint=f"give it: --input {top}=C,H,W (e.g. --input {top}=3,227,227)",
        )
    return (data, *((ctx.batch,) for _ in ctx.tops[1:]))


@register
class Data(DataLayer[DataParams]):
    """Reads examples from an LMDB/LevelDB database (Caffe DataLayer)."""

    caffe_names = ("DATA",)
    tops = Arity(1, 2)
    has_data_source = True
    Params = DataParams

    def shape(
        self, p: DataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return _data_shape(ctx, None, "database")

    def data_source(self, p: DataParams) -> dict[str, Any]:
        fields = _caffe_transform(p)
        backend = str(p.backend).upper()
        if backend != "LMDB":
            raise FieldError(
                f"reads a {backend} database; netdsl reads LMDB", "backend",
                "convert it to LMDB (Caffe's convert_imageset -backend lmdb) and set "
                "backend: LMDB")
        # Caffe's DataLayer reads the database in order (it was shuffled when written).
        return {**fields, "source": "lmdb", "shuffle": False}


@dataclass(frozen=True)
class ImageDataParams:
    source: str = field(default="", metadata=doc("list file: one 'path label' per line"))
    root_folder: str = field(default="", metadata=doc("prefix for the paths in the list"))
    batch_size: int = field(default=1, metadata=doc("examples per batch"))
    new_height: int = field(default=0, metadata=doc("resize to this height (0: keep)"))
    new_width: int = field(default=0, metadata=doc("resize to this width (0: keep)"))
    is_color: bool = field(default=True, metadata=doc("3 channels (true) or 1"))
    shuffle: bool = field(default=False, metadata=doc("shuffle each epoch"))
    rand_skip: int = field(default=0, metadata=doc("skip up to this many examples at start"))
    scale: float = field(default=1.0, metadata=doc("deprecated: use transform"))
    mean_file: str = field(default="", metadata=doc("deprecated: use transform"))
    crop_size: int = field(default=0, metadata=doc("deprecated: use transform"))
    mirror: bool = field(default=False, metadata=doc("deprecated: use transform"))
    transform: Transform = field(default=Transform(), metadata=doc("preprocessing"))


@register
class ImageData(DataLayer[ImageDataParams]):
    """Reads images named in a list file (Caffe ImageDataLayer)."""

    caffe_names = ("IMAGE_DATA",)
    tops = Arity(1, 2)
    has_data_source = True
    Params = ImageDataParams

    def shape(
        self, p: ImageDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        c = 3 if p.is_color else 1
        crop = p.transform.crop_size or p.crop_size
        known = ((c, crop, crop) if crop else
                 (c, p.new_height, p.new_width) if p.new_height and p.new_width else None)
        return _data_shape(ctx, known, "images (no new_height/new_width or crop_size)")

    def data_source(self, p: ImageDataParams) -> dict[str, Any]:
        fields = _caffe_transform(p)
        if bool(p.new_height) != bool(p.new_width):
            raise FieldError("needs both new_height and new_width", "new_height")
        return {
            **fields,
            "source": "list",
            "root": p.root_folder,
            "shuffle": p.shuffle,
            "resize": (p.new_height, p.new_width) if p.new_height else (),
            "channels": fields["channels"] or (3 if p.is_color else 1),
            "bgr": True,  # Caffe decodes with OpenCV: BGR
        }


@dataclass(frozen=True)
class MemoryDataParams:
    batch_size: int = field(default=1, metadata=doc("examples per batch"))
    channels: int = field(default=1, metadata=doc("channels"))
    height: int = field(default=1, metadata=doc("height"))
    width: int = field(default=1, metadata=doc("width"))
    transform: Transform = field(default=Transform(), metadata=doc("preprocessing"))


@register
class MemoryData(DataLayer[MemoryDataParams]):
    """Examples handed in from memory (Caffe MemoryDataLayer)."""

    caffe_names = ("MEMORY_DATA",)
    tops = Arity(1, 2)
    Params = MemoryDataParams

    def shape(
        self, p: MemoryDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return _data_shape(ctx, (p.channels, p.height, p.width))


@dataclass(frozen=True)
class HDF5DataParams:
    source: str = field(default="", metadata=doc("text file listing HDF5 files"))
    batch_size: int = field(default=1, metadata=doc("examples per batch"))
    shuffle: bool = field(default=False, metadata=doc("shuffle files and rows"))


@register
class HDF5Data(DataLayer[HDF5DataParams]):
    """Reads blobs from HDF5 files (Caffe HDF5DataLayer); shapes via --input."""

    caffe_names = ("HDF5_DATA",)
    tops = Arity(1)
    Params = HDF5DataParams

    def shape(
        self, p: HDF5DataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        out = []
        for top in ctx.tops:
            given = _input_override(ctx, top)
            if given is None:
                raise ctx.error(
                    f"the shape of '{top}' is stored in the HDF5 files",
                    hint=f"give it: --input {top}=C,H,W",
                )
            out.append(given)
        return tuple(out)

