"""WindowData (Caffe WindowDataLayer): R-CNN's crops of windows listed in a window file."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Shape, ShapeContext
from .data import DataLayer, Transform


@dataclass(frozen=True)
class WindowDataParams:
    source: str = field(default="", metadata=doc("the window file"))
    batch_size: int = field(default=0, metadata=doc("windows per batch"))
    fg_threshold: float = field(default=0.5, metadata=doc("overlap from which a window is fg"))
    bg_threshold: float = field(default=0.5, metadata=doc("overlap below which it is bg"))
    fg_fraction: float = field(default=0.25, metadata=doc("share of fg windows in a batch"))
    context_pad: int = field(default=0, metadata=doc("pixels of context around a window"))
    crop_mode: str = field(default="warp", metadata=doc("warp or square"))
    cache_images: bool = field(default=False, metadata=doc("keep all images in memory"))
    root_folder: str = field(default="", metadata=doc("prefix for the image paths"))
    scale: float = field(default=1.0, metadata=doc("deprecated: use transform"))
    mean_file: str = field(default="", metadata=doc("deprecated: use transform"))
    crop_size: int = field(default=0, metadata=doc("deprecated: use transform"))
    mirror: bool = field(default=False, metadata=doc("deprecated: use transform"))
    transform: Transform = field(default=Transform(), metadata=doc("preprocessing"))


@register
class WindowData(DataLayer[WindowDataParams]):
    """R-CNN's window crops and labels; netdsl gives shapes, reads no data (Caffe WindowDataLayer).

    Shapes come from the params as Caffe's DataLayerSetUp makes them: data (batch_size,
    3, crop_size, crop_size) and label (batch_size). The crop side is the transform's
    crop_size (or the deprecated one here), which Caffe requires. The channels are the
    window file's; netdsl does not open it and takes 3, as the layer decodes images in
    colour; ``--input data=C,H,W`` overrides. netdsl cannot read window files: ``netdsl
    train`` with this layer says so (give the net a ``data {}`` section instead). From
    src/caffe/layers/window_data_layer.cpp.
    """

    caffe_names = ("WINDOW_DATA",)
    tops = Arity.exact(2)
    Params = WindowDataParams

    def shape(self, p: WindowDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        data, label = ctx.tops
        given = ctx.inputs.get(data)
        if given is None:
            crop = p.transform.crop_size or p.crop_size
            if crop < 1:
                raise ctx.error(
                    "needs transform { crop_size } (Caffe's WindowData requires it)",
                    "transform", f"or give the data shape: --input {data}=3,227,227")
            given = (3, crop, crop)
        return ((ctx.batch, *given), (ctx.batch,))
