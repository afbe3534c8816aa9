"""Upsample (fork: SegNet's Caffe, alexgkendall/caffe-segnet): max-unpooling by a Pooling mask."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class UpsampleParams:
    scale: int | None = field(
        default=None, metadata=doc("deprecated: factor for both axes (unset: 2)"))
    scale_h: int | None = field(
        default=None, metadata=doc("deprecated: vertical factor (with scale_w, without scale)"))
    scale_w: int | None = field(
        default=None, metadata=doc("deprecated: horizontal factor (with scale_h)"))
    pad_out_h: bool = field(
        default=False, metadata=doc("deprecated: output height 2H - 1 (needs factor 2)"))
    pad_out_w: bool = field(
        default=False, metadata=doc("deprecated: output width 2W - 1 (needs factor 2)"))
    upsample_h: int | None = field(
        default=None, metadata=doc("output height (with upsample_w; alone Caffe ignores it)"))
    upsample_w: int | None = field(
        default=None, metadata=doc("output width (with upsample_h; alone Caffe ignores it)"))


@dataclass(frozen=True)
class UpsampleGeometry:
    """What ``UpsampleLayer::LayerSetUp`` derives: an explicit output size, or factors."""

    out_hw: tuple[int, int] | None
    scale: tuple[int, int]
    pad_out: tuple[bool, bool]


def upsample_geometry(p: UpsampleParams, ctx: ShapeContext) -> UpsampleGeometry:
    """``UpsampleLayer::LayerSetUp`` of alexgkendall/caffe-segnet, CHECK for CHECK."""
    explicit = p.upsample_h is not None and p.upsample_w is not None
    if not (explicit or (p.scale is None and p.scale_h is not None and p.scale_w is not None)
            or (p.scale_h is None and p.scale_w is None)):
        field_name = "scale" if p.scale is not None and p.scale_h is not None else (
            "scale_h" if p.scale_h is not None else "scale_w")
        raise ctx.error(
            "give upsample_h and upsample_w, or (deprecated) scale, or scale_h and scale_w",
            field_name, "SegNet's Upsample takes scale_h/scale_w together and without scale")
    if explicit:
        assert p.upsample_h is not None and p.upsample_w is not None
        for name, v in (("upsample_h", p.upsample_h), ("upsample_w", p.upsample_w)):
            if v <= 1:
                raise ctx.error(f"{name} must be greater than 1, got {v}", name)
        return UpsampleGeometry((p.upsample_h, p.upsample_w), (0, 0), (False, False))
    if (p.upsample_h is None) != (p.upsample_w is None):  # Caffe reads the pair or neither
        given, other = ("upsample_h", "upsample_w") if p.upsample_w is None else (
            "upsample_w", "upsample_h")
        ctx.warn(f"{given} without {other} is ignored, as Caffe ignores it: the output "
                 "size comes from the scale", given, f"give {other} too, or drop {given}")
    if p.scale_h is None or p.scale_w is None:
        sh = sw = 2 if p.scale is None else p.scale
        if sh <= 1:
            raise ctx.error(f"scale must be greater than 1, got {sh}", "scale")
    else:
        sh, sw = p.scale_h, p.scale_w
        for name, v in (("scale_h", sh), ("scale_w", sw)):
            if v <= 1:
                raise ctx.error(f"{name} must be greater than 1, got {v}", name)
    for name, pad, s in (("pad_out_h", p.pad_out_h, sh), ("pad_out_w", p.pad_out_w, sw)):
        if pad and s != 2:
            raise ctx.error(
                f"{name} needs a factor of 2, got {s}", name,
                "otherwise the output size is ill-defined; give upsample_h and upsample_w")
    return UpsampleGeometry(None, (sh, sw), (p.pad_out_h, p.pad_out_w))


@register
class Upsample(LayerType[UpsampleParams]):
    """Max-unpooling by a Pooling mask (fork: SegNet's Caffe, alexgkendall/caffe-segnet).

    ``src/caffe/layers/upsample_layer.cpp`` and ``UpsampleParameter`` of
    alexgkendall/caffe-segnet (ENet's Caffe, TimoSaemann/caffe-enet, has the same code).
    Bottoms: the map to unpool and the mask of the MAX Pooling layer it mirrors (that
    layer's second top), of one shape. The top is zero except at the mask's positions,
    which receive the map's values; its size is ``upsample_h`` x ``upsample_w``, else
    ``H * scale_h - pad_out_h`` x ``W * scale_w - pad_out_w``.
    """

    bottoms = Arity.exact(2)
    fresh_output = True
    Params = UpsampleParams
    fork = "SegNet and ENet (alexgkendall/caffe-segnet)"

    def shape(self, p: UpsampleParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        g = upsample_geometry(p, ctx)
        data, mask = bottoms
        if len(data) != 4:
            raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(data)}")
        if len(mask) != 4:
            raise ctx.error(f"needs a 4-D (N, C, H, W) mask, got {list(mask)}")
        if data != mask:
            raise ctx.error(
                f"the mask {list(mask)} must have the input's shape {list(data)}",
                hint="the second bottom is the mask top of the MAX Pooling layer this "
                "Upsample mirrors (the Pooling layer's second top)")
        if g.out_hw is not None:
            out_hw = g.out_hw
        else:
            out_hw = (data[2] * g.scale[0] - int(g.pad_out[0]),
                      data[3] * g.scale[1] - int(g.pad_out[1]))
        return ((data[0], data[1], *out_hw),)

    def lower(self, p: UpsampleParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import resample

        return Call(resample.max_unpool, {"out_hw": (tops[0][2], tops[0][3])})
