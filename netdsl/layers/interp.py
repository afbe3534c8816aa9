"""Interp (fork: DeepLab's Caffe, DeepLab v2 / PSPNet): bilinear resize, corners aligned."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Follow, Kernel, LayerType, Shape, ShapeContext
from .mvn import legacy_nchw


@dataclass(frozen=True)
class InterpParams:
    height: int | None = field(
        default=None, metadata=doc("output height (with width; used without the factors)"))
    width: int | None = field(
        default=None, metadata=doc("output width (with height)"))
    zoom_factor: int | None = field(
        default=None, metadata=doc("output (in - 1) * zoom + 1 (after shrink_factor if both)"))
    shrink_factor: int | None = field(
        default=None, metadata=doc("output (in - 1) / shrink + 1, rounded down"))
    pad_beg: int = field(
        default=0, metadata=doc("<= 0: rows and columns cropped from the input's start"))
    pad_end: int = field(
        default=0, metadata=doc("<= 0: rows and columns cropped from the input's end"))


def _shrink(size: int, factor: int) -> int:
    """C's ``(size - 1) / factor + 1``: the division truncates toward zero."""
    q = abs(size - 1) // factor
    return (q if size >= 1 else -q) + 1


def interp_size(p: InterpParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
                ) -> tuple[int, int]:
    """``InterpLayer::LayerSetUp`` and ``Reshape``, CHECK for CHECK: the output height
    and width."""
    if p.pad_beg > 0:
        raise ctx.error("pad_beg must be <= 0 (Interp only crops)", "pad_beg")
    if p.pad_end > 0:
        raise ctx.error("pad_end must be <= 0 (Interp only crops)", "pad_end")
    _, _, h, w = legacy_nchw(bottoms[0], ctx)
    eff = (h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end)
    for name, factor in (("shrink_factor", p.shrink_factor), ("zoom_factor", p.zoom_factor)):
        if factor is not None and factor < 1:
            raise ctx.error(f"{name} must be positive, got {factor}", name)
    out: tuple[int, int]
    if p.shrink_factor is not None and p.zoom_factor is None:
        out = (_shrink(eff[0], p.shrink_factor), _shrink(eff[1], p.shrink_factor))
    elif p.zoom_factor is not None and p.shrink_factor is None:
        z = p.zoom_factor
        out = (eff[0] + (eff[0] - 1) * (z - 1), eff[1] + (eff[1] - 1) * (z - 1))
    elif p.height is not None and p.width is not None:
        out = (p.height, p.width)
    elif p.shrink_factor is not None and p.zoom_factor is not None:
        z = p.zoom_factor
        hs, ws = _shrink(eff[0], p.shrink_factor), _shrink(eff[1], p.shrink_factor)
        out = (hs + (hs - 1) * (z - 1), ws + (ws - 1) * (z - 1))
    elif len(bottoms) == 2:
        _, _, rh, rw = legacy_nchw(bottoms[1], ctx)
        out = (rh, rw)
    else:
        raise ctx.error(
            "needs an output size: zoom_factor and/or shrink_factor, or height and width",
            hint="e.g. zoom_factor: 8, or height: 65 width: 65")
    if min(eff) <= 0:
        raise ctx.error(f"the cropped input {list(eff)} must have a positive height and "
                        "width", "pad_beg")
    if min(out) <= 0:
        raise ctx.error(f"the output size {list(out)} must be positive")
    return out


@register
class Interp(LayerType[InterpParams]):
    """Bilinear resize, corners aligned (fork: DeepLab's Caffe, DeepLab v2; also PSPNet's).

    ``src/caffe/layers/interp_layer.cpp``, ``src/caffe/util/interp.cpp`` and
    ``InterpParameter`` of DeepLab v2's Caffe as hszhao/PSPNet ships it. The output size
    comes from ``shrink_factor``, then ``zoom_factor``, then ``height``/``width``, then
    both factors (shrink, then zoom), in Caffe's order of precedence; an optional second
    bottom gives it last (its height and width), as in the deeplab-ver2 copy
    maweifei/deeplab-ver2. Sampling is ``caffe_cpu_interp2``: source position
    ``o * (in - 1) / (out - 1)`` computed in float32, like ``align_corners=True``.
    """

    fork = "DeepLab v2 and PSPNet"

    bottoms = Arity(1, 2)
    fresh_output = True
    follow = Follow.CHANNELS
    Params = InterpParams

    def shape(self, p: InterpParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        n, c, _, _ = legacy_nchw(bottoms[0], ctx)
        return ((n, c, *interp_size(p, bottoms, ctx)),)

    def lower(self, p: InterpParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import resample

        fn = resample.interp_like if len(bottoms) == 2 else resample.interp
        return Call(fn, {"out_hw": (tops[0][2], tops[0][3]), "pad_beg": p.pad_beg,
                         "pad_end": p.pad_end})
