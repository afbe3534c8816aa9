"""ImageLabelmapData (fork: HED's Caffe, s9xie/hed; not in BVLC): images and their
per-pixel label maps, named in pairs in a list file."""

from __future__ import annotations

from . import register
from .base import Arity, Shape, ShapeContext
from .data import DataLayer, ImageDataParams


@register
class ImageLabelmapData(DataLayer[ImageDataParams]):
    """Image/label-map pairs for edge and segmentation nets (fork: HED's Caffe,
    ``src/caffe/layers/image_labelmap_data_layer.cpp``); netdsl gives shapes, reads no data.

    The params are ImageData's (``image_data_param``); each list line is ``image
    labelmap``. Tops, as its DataLayerSetUp makes them: the image (N, C, H, W), C 3 or 1
    by ``is_color``, and the label map (N, 1, H, W) at the same size (the fork checks
    that the two files agree). H and W are the transform's ``crop_size``, else
    ``new_height`` x ``new_width``, else the images' own size, which shapes does not
    read: give ``--input data=3,H,W``. ``netdsl train`` with this layer says netdsl
    cannot read its data (give the net a ``data {}`` section instead).
    """

    fork = "HED (s9xie/hed)"

    caffe_params = ("image_data_param",)
    tops = Arity.exact(2)
    Params = ImageDataParams

    def shape(self, p: ImageDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if bool(p.new_height) != bool(p.new_width):  # the fork's CHECK
            raise ctx.error("needs new_height and new_width together (or neither)",
                            "new_height")
        data, _ = ctx.tops
        c = 3 if p.is_color else 1
        crop = p.transform.crop_size or p.crop_size
        given = ctx.inputs.get(data)
        if given is None and crop:
            given = (c, crop, crop)
        elif given is None and p.new_height:
            given = (c, p.new_height, p.new_width)
        if given is None:
            raise ctx.error(
                f"the shape of '{data}' is the images' size, which shapes does not read",
                "new_height", f"give it: --input {data}={c},H,W (e.g. {c},500,500)")
        if len(given) != 3:
            raise ctx.error(f"--input {data} must be C,H,W, got {list(given)}")
        return ((ctx.batch, *given), (ctx.batch, 1, *given[1:]))
