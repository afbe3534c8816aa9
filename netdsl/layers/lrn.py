"""LRN (Caffe LRNLayer): local response normalisation across or within channels."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..caffe_math import lrn_window
from ..fields import CaffeEnum, doc
from . import register
from .base import Call, Engine, Follow, Kernel, LayerType, Shape, ShapeContext, Sharding, Split


class NormRegion(CaffeEnum):
    """LRNParameter.NormRegion (BVLC caffe.proto)."""

    ACROSS_CHANNELS = 0
    WITHIN_CHANNEL = 1


@dataclass(frozen=True)
class LRNParams:
    local_size: int = field(default=5, metadata=doc("channels (or pixels) in the window"))
    alpha: float = field(
        default=1.0, metadata=doc("scale, Caffe's meaning: divided by local_size in the formula")
    )
    beta: float = field(default=0.75, metadata=doc("exponent"))
    k: float = field(default=1.0, metadata=doc("additive constant"))
    norm_region: NormRegion = field(
        default=NormRegion.ACROSS_CHANNELS, metadata=doc("normalise across or within channels")
    )
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


@register
class LRN(LayerType[LRNParams]):
    """b = a / (k + alpha/n * sum of a^2 over n neighbours)^beta (Caffe LRNLayer)."""

    caffe_names = ("LocalResponseNorm",)
    follow = Follow.CHANNELS
    fresh_output = True
    Params = LRNParams

    def shape(
        self, p: LRNParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(b) != 4:
            raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(b)}")
        if p.local_size < 1:
            raise ctx.error("local_size must be positive", "local_size")
        if p.local_size % 2 == 0:
            raise ctx.error(
                f"local_size must be odd, got {p.local_size}", "local_size",
                "Caffe's LRNLayer accepts only odd windows, centred on each channel",
            )
        return (b,)

    def sharding(self, p: LRNParams, bottoms: tuple[Shape, ...]) -> Sharding:
        """Split by channels, a shard across channels also reads its window's reach into
        the neighbouring shards (its halo), so that it equals the one-device result."""
        across = p.norm_region is NormRegion.ACROSS_CHANNELS
        return Sharding(Split.FOLLOW, Follow.CHANNELS,
                        halo=lrn_window(p.local_size) if across else (0, 0))

    def lower(self, p: LRNParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import lrn

        return Call(lrn.lrn, self._kwargs(p))

    def lower_shard(self, p: LRNParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...],
                    outputs: tuple[int, int] | None, halo: tuple[int, int]) -> Kernel:
        if halo == (0, 0):
            return self.lower(p, bottoms, tops)
        from ..kernels import lrn

        return Call(lrn.lrn_shard, {"below": halo[0], "above": halo[1], **self._kwargs(p)})

    @staticmethod
    def _kwargs(p: LRNParams) -> dict[str, object]:
        return {"local_size": p.local_size, "alpha": p.alpha, "beta": p.beta, "k": p.k,
                "region": p.norm_region.name}
