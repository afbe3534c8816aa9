"""Crop (Caffe CropLayer): cut the first bottom to the second's size, from given offsets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis


@dataclass(frozen=True)
class CropParams:
    axis: int = field(default=2, metadata=doc("first axis cut; earlier axes are kept"))
    offset: tuple[int, ...] = field(
        default=(), metadata=doc("start of the crop: one for every cut axis, or one per axis"))


def crop_offsets(p: CropParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
                 ) -> tuple[int, tuple[int, ...]]:
    """Caffe's CropLayer::LayerSetUp and Reshape checks: the first cut axis and the
    offset of each cut axis (0 where no offset is given)."""
    data, ref = bottoms
    ndim = len(data)
    start = canonical_axis(p.axis, ndim, ctx)
    if len(p.offset) > 1 and start + len(p.offset) != ndim:
        raise ctx.error(
            f"{len(p.offset)} offsets for the {ndim - start} axes from axis {start} on of a "
            f"{ndim}-D blob", "offset", "give one offset for all cut axes, or one per axis")
    if any(o < 0 for o in p.offset):
        raise ctx.error(f"offsets cannot be negative, got {list(p.offset)}", "offset")
    if len(ref) < ndim:
        raise ctx.error(
            f"the reference (bottom 1) {list(ref)} has fewer axes than the blob cut "
            f"{list(data)}")
    offsets = tuple(p.offset[0] if len(p.offset) == 1 else p.offset[i - start] if p.offset
                    else 0 for i in range(start, ndim))
    for i, off in zip(range(start, ndim), offsets, strict=True):
        if data[i] - off < ref[i]:
            raise ctx.error(
                f"the crop of axis {i} is out of bounds: size {ref[i]} from offset {off} "
                f"needs {off + ref[i]}, the blob has {data[i]}", "offset")
    return start, offsets


@register
class Crop(LayerType[CropParams]):
    """Cuts bottom 0 to bottom 1's size on axes from `axis` on (Caffe CropLayer, crop_layer.cpp).

    Bottom 1 gives only its shape (FCN crops score maps to the input image this way).
    Offsets: none means 0; one is used for every cut axis; otherwise one per cut axis.
    """

    bottoms = Arity.exact(2)
    tops = Arity.exact(1)
    Params = CropParams

    def shape(self, p: CropParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        start, _ = crop_offsets(p, bottoms, ctx)
        data, ref = bottoms
        return ((*data[:start], *ref[start:len(data)]),)

    def lower(self, p: CropParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        start, offsets = crop_offsets(p, bottoms, ShapeContext.detached(self.name))
        return Call(plumbing.crop, {"axis": start, "offsets": offsets})
