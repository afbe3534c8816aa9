"""PriorBox (fork: SSD's Caffe, weiliu89/caffe, src/caffe/layers/prior_box_layer.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..fields import doc
from . import register
from ._detection import f32, legacy_dim
from .base import Arity, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class PriorBoxParams:
    min_size: tuple[float, ...] = field(
        default=(), metadata=doc("box side(s) in pixels, one prior set each (required)")
    )
    max_size: tuple[float, ...] = field(
        default=(), metadata=doc("one per min_size: adds a square of side sqrt(min*max)")
    )
    aspect_ratio: tuple[float, ...] = field(
        default=(), metadata=doc("aspect ratios besides 1; duplicates are ignored")
    )
    flip: bool = field(default=True, metadata=doc("also use 1/r for each aspect ratio r"))
    clip: bool = field(default=False, metadata=doc("clip the priors to [0, 1]"))
    variance: tuple[float, ...] = field(
        default=(), metadata=doc("1 or 4 variances stored with the priors (unset: 0.1)")
    )
    img_size: int | None = field(
        default=None, metadata=doc("image side (unset: the second bottom's size)")
    )
    img_h: int | None = field(default=None, metadata=doc("image height (with img_w)"))
    img_w: int | None = field(default=None, metadata=doc("image width (with img_h)"))
    step: float | None = field(
        default=None, metadata=doc("pixels between prior centres (unset: image / map size)")
    )
    step_h: float | None = field(default=None, metadata=doc("vertical step (with step_w)"))
    step_w: float | None = field(default=None, metadata=doc("horizontal step (with step_h)"))
    offset: float = field(
        default=0.5, metadata=doc("centre of the first prior, in steps from the corner")
    )


def aspect_ratios(p: PriorBoxParams) -> list[float]:
    """LayerSetUp's list: 1, then each new ratio (and its flip), as C floats."""
    ars = [1.0]
    for a in p.aspect_ratio:
        ar = f32(a)
        if any(abs(f32(ar - x)) < 1e-6 for x in ars):
            continue
        ars.append(ar)
        if p.flip:
            ars.append(f32(1.0 / ar))
    return ars


def num_priors(p: PriorBoxParams) -> int:
    return len(aspect_ratios(p)) * len(p.min_size) + len(p.max_size)


def _either(ctx: ShapeContext, one: Any, h: Any, w: Any, what: str, one_name: str
            ) -> tuple[Any, Any] | None:
    """``one_name`` or ``what_h``/``what_w`` (LayerSetUp's has_* checks); None if neither."""
    if h is not None or w is not None:
        if one is not None:
            raise ctx.error(f"give either {one_name} or {what}_h/{what}_w, not both", one_name)
        if h is None or w is None:  # the other one is 0 in Caffe, which its CHECK refuses
            given, missing = (f"{what}_w", f"{what}_h") if h is None else (
                f"{what}_h", f"{what}_w")
            raise ctx.error(f"{given} needs {missing} too", given)
        for v, name in ((h, f"{what}_h"), (w, f"{what}_w")):
            if v <= 0:
                raise ctx.error(f"{name} must be larger than 0", name)
        return h, w
    if one is not None:
        if one <= 0:
            raise ctx.error(f"{one_name} must be larger than 0", one_name)
        return one, one
    return None


def check_params(p: PriorBoxParams, ctx: ShapeContext) -> None:
    """PriorBoxLayer::LayerSetUp's CHECKs."""
    if not p.min_size:
        raise ctx.error("needs min_size", hint="e.g. min_size: 30")
    if any(m <= 0 for m in p.min_size):
        raise ctx.error("min_size must be positive", "min_size")
    if p.max_size:
        if len(p.max_size) != len(p.min_size):
            raise ctx.error(
                f"has {len(p.max_size)} max_size for {len(p.min_size)} min_size; give one "
                "each", "max_size")
        for lo, hi in zip(p.min_size, p.max_size, strict=True):
            if hi <= lo:
                raise ctx.error(f"max_size {hi:g} must be greater than min_size {lo:g}",
                                "max_size")
    if len(p.variance) > 1 and len(p.variance) != 4:
        raise ctx.error(f"takes 1 or 4 variances, got {len(p.variance)}", "variance")
    if any(v <= 0 for v in p.variance):
        raise ctx.error("variances must be positive", "variance")
    _either(ctx, p.img_size, p.img_h, p.img_w, "img", "img_size")
    _either(ctx, p.step, p.step_h, p.step_w, "step", "step")


@register
class PriorBox(LayerType[PriorBoxParams]):
    """SSD's default boxes for one feature map (fork: SSD's Caffe, weiliu89/caffe).

    Bottoms: the feature map and the image (only their sizes are read). The top is 1 x 2
    x (H*W*num_priors*4): every prior's xmin, ymin, xmax, ymax in [0, 1] image
    coordinates, then the same count of variances. It depends only on shapes, so the
    kernel computes it once, as prior_box_layer.cpp's Forward_cpu does (C floats where
    Caffe keeps floats), and returns it on every call.
    """

    bottoms = Arity.exact(2)
    Params = PriorBoxParams
    fork = "SSD (weiliu89/caffe)"

    def shape(
        self, p: PriorBoxParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        check_params(p, ctx)
        h, w = legacy_dim(bottoms[0], 2, ctx), legacy_dim(bottoms[0], 3, ctx)
        n = h * w * num_priors(p) * 4
        if n <= 0:
            raise ctx.error(f"the feature map {list(bottoms[0])} makes no priors")
        return ((1, 2, n),)

    def lower(self, p: PriorBoxParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.detection import PriorBoxes

        ctx = ShapeContext.detached(self.name)
        layer_hw = (legacy_dim(bottoms[0], 2, ctx), legacy_dim(bottoms[0], 3, ctx))
        img = _either(ctx, p.img_size, p.img_h, p.img_w, "img", "img_size")
        img_hw = (int(img[0]), int(img[1])) if img else (
            legacy_dim(bottoms[1], 2, ctx), legacy_dim(bottoms[1], 3, ctx))
        step = _either(ctx, p.step, p.step_h, p.step_w, "step", "step")
        step_hw = (f32(step[0]), f32(step[1])) if step else (
            f32(f32(img_hw[0]) / layer_hw[0]), f32(f32(img_hw[1]) / layer_hw[1]))
        variance = tuple(f32(v) for v in p.variance) or (f32(0.1),)
        return PriorBoxes(
            layer_hw, img_hw, step_hw, f32(p.offset),
            # Forward_cpu reads the sizes into ints: `int min_size_ = min_sizes_[s]`
            tuple(int(f32(m)) for m in p.min_size), tuple(int(f32(m)) for m in p.max_size),
            tuple(aspect_ratios(p)), p.clip, variance)
