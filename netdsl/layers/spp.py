"""SPP (Caffe SPPLayer): spatial pyramid pooling, a fixed-length output from any size."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..caffe_math import pooled_size
from ..fields import doc
from . import register
from .base import Engine, Kernel, LayerType, Shape, ShapeContext
from .pooling import PoolMethod

#: One pyramid level: the window (and stride) and the padding, each (height, width).
Level = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class SPPParams:
    pyramid_height: int = field(
        default=0, metadata=doc("levels; level i pools into 2^i x 2^i bins (required)"))
    pool: PoolMethod = field(default=PoolMethod.MAX, metadata=doc("pooling method"))
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


def spp_level(level: int, h: int, w: int) -> Level:
    """Caffe's SPPLayer::GetPoolingParam: the window covering 1/2^level of the map
    (rounded up) and the padding that makes 2^level windows cover it exactly."""
    bins = 2**level
    kernel, pad = [], []
    for size in (h, w):
        k = math.ceil(size / bins)
        kernel.append(k)
        pad.append((k * bins - size + 1) // 2)
    return (kernel[0], kernel[1]), (pad[0], pad[1])


def spp_levels(p: SPPParams, bottom: Shape, ctx: ShapeContext) -> list[tuple[Level, Shape]]:
    """Each level's window and padding, with its pooled (h, w), after the checks of
    SPPLayer::LayerSetUp/Reshape and of the PoolingLayer it sets up for each level."""
    if len(bottom) != 4:
        raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(bottom)}")
    h, w = bottom[2], bottom[3]
    if h < 1 or w < 1:
        raise ctx.error(f"input dimensions cannot be zero, got {list(bottom)}")
    if p.pyramid_height < 1:
        raise ctx.error("needs pyramid_height (at least 1)", "pyramid_height",
                        "e.g. pyramid_height: 3 pools into 1x1, 2x2 and 4x4 bins")
    out: list[tuple[Level, Shape]] = []
    for level in range(p.pyramid_height):
        (kh, kw), (ph, pw) = spp_level(level, h, w)
        if ph or pw:
            if p.pool is PoolMethod.STOCHASTIC:
                raise ctx.error(
                    f"level {level} pads the {h}x{w} input, and Caffe pools with padding "
                    "only for MAX and AVE", "pool")
            if ph >= kh or pw >= kw:
                raise ctx.error(
                    f"the {h}x{w} input is too small for {p.pyramid_height} levels: level "
                    f"{level} would pad {ph}x{pw} around a {kh}x{kw} window (Caffe's pooling "
                    "needs the pad smaller than the window)", "pyramid_height")
        clip = bool(ph or pw)
        pooled = (pooled_size(h, kh, kh, ph, True, clip), pooled_size(w, kw, kw, pw, True, clip))
        out.append((((kh, kw), (ph, pw)), pooled))
    return out


@register
class SPP(LayerType[SPPParams]):
    """Spatial pyramid pooling: pools at 1x1, 2x2, 4x4... bins and joins them (Caffe SPPLayer).

    He et al., "Spatial Pyramid Pooling in Deep Convolutional Networks" (2014), as
    src/caffe/layers/spp_layer.cpp does it: level i is a Caffe pooling whose window is
    ceil(H / 2^i) by ceil(W / 2^i), its own stride, padded to cover the map; each level is
    flattened and the levels concatenated, (N, C * sum of bins). With one level the top is
    that pooling's (N, C, 1, 1), not flattened.
    """

    Params = SPPParams

    def shape(self, p: SPPParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        levels = spp_levels(p, bottoms[0], ctx)  # checks the bottom is 4-D first
        n, c = bottoms[0][:2]
        if len(levels) == 1:
            return ((n, c, *levels[0][1]),)
        return ((n, sum(c * ph * pw for _, (ph, pw) in levels)),)

    def lower(self, p: SPPParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.spp import SPP as Module

        levels = spp_levels(p, bottoms[0], ShapeContext.detached(self.name))
        return Module([geometry for geometry, _ in levels], p.pool.name)
