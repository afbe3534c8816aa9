"""Pooling (Caffe PoolingLayer): MAX/AVE/STOCHASTIC, ceil rounding with the last-window clip.

STOCHASTIC samples one value per window in TRAIN and takes Caffe's weighted average in
TEST (BVLC caffe src/caffe/layers/pooling_layer.cu); see netdsl.kernels.pooling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..caffe_math import pooled_size
from ..fields import CaffeEnum, doc
from . import register
from .base import Arity, Call, Engine, Follow, Kernel, LayerType, Shape, ShapeContext, spatial_pair
from .convolution import lenient_side


class PoolMethod(CaffeEnum):
    """PoolingParameter.PoolMethod (and SPPParameter's, numbered alike; BVLC caffe.proto)."""

    MAX = 0
    AVE = 1
    STOCHASTIC = 2


class RoundMode(CaffeEnum):
    """PoolingParameter.RoundMode (BVLC caffe.proto)."""

    CEIL = 0
    FLOOR = 1


@dataclass(frozen=True)
class PoolParams:
    pool: PoolMethod = field(default=PoolMethod.MAX, metadata=doc("pooling method"))
    kernel_size: int | None = field(default=None, metadata=doc("window side, in pixels"))
    kernel_h: int | None = field(default=None, metadata=doc("window height"))
    kernel_w: int | None = field(default=None, metadata=doc("window width"))
    stride: int = field(default=1, metadata=doc("step between windows"))
    stride_h: int | None = field(default=None, metadata=doc("vertical step"))
    stride_w: int | None = field(default=None, metadata=doc("horizontal step"))
    pad: int = field(default=0, metadata=doc("implicit padding on each side"))
    pad_h: int | None = field(default=None, metadata=doc("vertical padding"))
    pad_w: int | None = field(default=None, metadata=doc("horizontal padding"))
    global_pooling: bool = field(default=False, metadata=doc("pool over the whole map"))
    round_mode: RoundMode = field(default=RoundMode.CEIL, metadata=doc("output size rounding"))
    ceil_mode: bool | None = field(
        default=None, metadata=doc("forks' switch for round_mode: true is CEIL, false FLOOR"))
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


def round_mode(p: PoolParams, ctx: ShapeContext) -> RoundMode:
    """The rounding of the output size: ``round_mode``, or the forks' ``ceil_mode``.

    Caffe forks that predate BVLC's ``round_mode`` carry ``optional bool ceil_mode
    [default = true]`` in PoolingParameter (proposed as BVLC caffe PR #3057), and round
    the output size up when it is true, down when false, as ``round_mode: CEIL`` /
    ``FLOOR`` does (foss-for-synopsys-dwc-arc-processors/synopsys-caffe
    src/caffe/proto/caffe.proto and src/caffe/layers/pooling_layer.cpp). A file that
    gives both must mean the same rounding with each.
    """
    if p.ceil_mode is None:
        return p.round_mode
    mode = RoundMode.CEIL if p.ceil_mode else RoundMode.FLOOR
    if "round_mode" in ctx.field_spans and p.round_mode is not mode:
        raise ctx.error(
            f"ceil_mode: {str(p.ceil_mode).lower()} means round_mode: {mode.name}, but "
            f"round_mode is {p.round_mode.name}", "ceil_mode", "give one of the two")
    return mode


@dataclass(frozen=True)
class PoolGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]


def _two(t: tuple[int, ...]) -> tuple[int, int]:
    h, w = t
    return h, w


def pool_geometry(p: PoolParams, bottom: Shape, ctx: ShapeContext) -> PoolGeometry:
    h, w = bottom[2], bottom[3]
    kernel: tuple[int, ...]
    if p.global_pooling:
        if p.kernel_size is not None or p.kernel_h is not None:
            raise ctx.error("global_pooling takes no kernel size", "kernel_size")
        kernel = (h, w)
    else:
        generic = () if p.kernel_size is None else (p.kernel_size,)
        kernel = spatial_pair(ctx, generic, p.kernel_h, p.kernel_w, "kernel", None)
    stride = spatial_pair(ctx, (p.stride,) if p.stride_h is None else (), p.stride_h, p.stride_w,
                          "stride", 1)
    pad = spatial_pair(ctx, (p.pad,) if p.pad_h is None else (), p.pad_h, p.pad_w, "pad", 0)
    if p.global_pooling and (pad != (0, 0) or stride != (1, 1)):
        raise ctx.error("global_pooling needs pad 0 and stride 1", "global_pooling")
    if min(kernel) < 1 or min(stride) < 1:
        raise ctx.error("kernel and stride must be positive", "kernel_size")
    for k, pd in zip(kernel, pad, strict=True):
        if pd >= k:
            raise ctx.error(f"pad {pd} must be smaller than the kernel {k}", "pad")
    return PoolGeometry(_two(kernel), _two(stride), _two(pad))


@register
class Pooling(LayerType[PoolParams]):
    """Max or average pooling over windows (Caffe PoolingLayer)."""

    caffe_names = ("POOLING",)
    tops = Arity(1, 2)
    follow = Follow.CHANNELS
    fresh_output = True
    Params = PoolParams

    def shape(
        self, p: PoolParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(b) != 4:
            raise ctx.error(
                f"its bottom has shape {list(b)}: needs 4 axes (N, C, H, W)", "bottom",
                "Caffe's PoolingLayer CHECKs 4 axes; Reshape the blob first")
        g = pool_geometry(p, b, ctx)
        if p.pool is PoolMethod.STOCHASTIC and any(g.pad):
            raise ctx.error(
                f"pad {list(g.pad)} with pool: STOCHASTIC; Caffe implements padding only "
                "for MAX and AVE pooling", "pad_h" if "pad_h" in ctx.field_spans else "pad",
                "drop pad, or use pool: MAX or AVE")
        ceil = round_mode(p, ctx) is RoundMode.CEIL
        out = []
        for size, k, st, pd in zip(b[2:], g.kernel, g.stride, g.pad, strict=True):
            side = pooled_size(size, k, st, pd, ceil, clip=any(g.pad))
            if size + 2 * pd < k:  # Caffe checks nothing of the kind (see lenient_side)
                side = lenient_side(
                    ctx, side, f"kernel {k} is larger than the padded input {size + 2 * pd}",
                    "kernel_size")
            out.append(side)
        if len(ctx.tops) > 2 or (len(ctx.tops) == 2 and p.pool is not PoolMethod.MAX):
            raise ctx.error("a second top (the argmax mask) needs pool: MAX")
        top = (b[0], b[1], *out)
        return (top,) * len(ctx.tops)

    def lower(self, p: PoolParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import pooling

        g = pool_geometry(p, bottoms[0], ShapeContext.detached(self.name))
        geometry: dict[str, Any] = {"kernel_hw": None if p.global_pooling else g.kernel,
                                    "stride_hw": g.stride, "pad_hw": g.pad}
        mode = round_mode(p, ShapeContext.detached(self.name))
        window: dict[str, Any] = {**geometry, "round_mode": mode.name,
                                  "global_pooling": p.global_pooling}
        if p.pool is PoolMethod.STOCHASTIC:
            return pooling.StochasticPool(**window)
        if len(tops) == 2:
            return Call(pooling.pool2d_with_mask, window)
        return Call(pooling.pool2d, {**geometry, "method": p.pool.name, **window})
