"""DenseImageData (fork: SegNet's Caffe, alexgkendall/caffe-segnet): image and label-image pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Shape, ShapeContext
from .data import DataLayer, Transform


@dataclass(frozen=True)
class DenseImageDataParams:
    source: str = field(default="", metadata=doc("list file: one 'image label_image' per line"))
    batch_size: int = field(default=0, metadata=doc("examples per batch"))
    rand_skip: int = field(default=0, metadata=doc("skip up to this many examples at start"))
    shuffle: bool = field(default=False, metadata=doc("shuffle each epoch"))
    new_height: int = field(default=0, metadata=doc("resize to this height (0: keep)"))
    new_width: int = field(default=0, metadata=doc("resize to this width (0: keep)"))
    label_divide_factor: int = field(
        default=1, metadata=doc("ENet's fork only: label image resized to 1/factor"))
    is_color: bool = field(default=True, metadata=doc("3 channels (true) or 1"))
    mean_file: str = field(default="", metadata=doc("mean image (binaryproto)"))
    root_folder: str = field(default="", metadata=doc("prefix for the paths in the list"))
    mirror: bool = field(default=False, metadata=doc("random horizontal flips of both images"))
    crop_width: int = field(default=0, metadata=doc("random crop width (with crop_height)"))
    crop_height: int = field(default=0, metadata=doc("random crop height (with crop_width)"))
    transform: Transform = field(default=Transform(), metadata=doc("preprocessing"))


@register
class DenseImageData(DataLayer[DenseImageDataParams]):
    """Images and label images from a list file (fork: SegNet's Caffe, alexgkendall/caffe-segnet).

    ``src/caffe/layers/dense_image_data_layer.cpp`` and ``DenseImageDataParameter`` of
    alexgkendall/caffe-segnet; ENet's Caffe (TimoSaemann/caffe-enet) adds
    ``label_divide_factor``. Tops: the images (N, C, H, W) and the label images
    (N, 1, H, W). The size is ``transform { crop_size }``, else ``crop_height`` x
    ``crop_width``, else ``new_height`` x ``new_width`` (the label divided by
    ``label_divide_factor``), else that of the images: give it with ``--input``.
    (SegNet's fork refuses ``transform { mirror crop_size }`` at its first batch; ENet's
    takes them; both size the tops as above.)
    netdsl cannot read the list for training: give the net a ``data {}`` section or an
    Input layer.
    """

    tops = Arity.exact(2)
    Params = DenseImageDataParams
    fork = "SegNet and ENet (alexgkendall/caffe-segnet)"

    def shape(self, p: DenseImageDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        for name in ("new_height", "new_width", "crop_height", "crop_width"):
            if getattr(p, name) < 0:
                raise ctx.error(f"{name} must be >= 0, got {getattr(p, name)}", name)
        if (p.new_height > 0) != (p.new_width > 0):
            raise ctx.error("new_height and new_width must be set together",
                            "new_height" if p.new_height else "new_width")
        if (p.crop_height > 0) != (p.crop_width > 0):
            raise ctx.error("crop_height and crop_width must be set together",
                            "crop_height" if p.crop_height else "crop_width")
        if p.label_divide_factor < 1:
            raise ctx.error(f"label_divide_factor must be positive, got "
                            f"{p.label_divide_factor}", "label_divide_factor")
        image_top, label_top = ctx.tops
        channels = 3 if p.is_color else 1
        crop = p.transform.crop_size
        known: Shape | None = None
        label_hw: tuple[int, int] | None = None
        if crop > 0:
            known, label_hw = (channels, crop, crop), (crop, crop)
        elif p.crop_height > 0:
            known = (channels, p.crop_height, p.crop_width)
            label_hw = (p.crop_height, p.crop_width)
        elif p.new_height > 0:
            known = (channels, p.new_height, p.new_width)
        given = ctx.inputs.get(image_top)
        if given is not None and len(given) != 3:
            raise ctx.error(f"--input {image_top} needs C,H,W, got {list(given)}")
        image = given if given is not None else known
        if image is None:
            raise ctx.error(
                f"the size of '{image_top}' is that of the images in the list, which shapes "
                "does not read", "source",
                f"give it: --input {image_top}=3,H,W (e.g. --input {image_top}=3,360,480), "
                "or set new_height and new_width")
        if label_hw is None:
            f = p.label_divide_factor
            label_hw = (image[1] // f, image[2] // f)
        label = ctx.inputs.get(label_top, (1, *label_hw))
        return (ctx.batch, *image), (ctx.batch, *label)
