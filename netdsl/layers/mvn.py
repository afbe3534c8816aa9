"""MVN (Caffe MVNLayer): mean-variance normalisation of each channel plane, or of each item."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape, ShapeContext, Sharding, Split


def legacy_nchw(b: Shape, ctx: ShapeContext) -> Shape:
    """``(num, channels, height, width)`` of a blob as Caffe's legacy accessors give them
    (``Blob::LegacyShape``): missing trailing axes are 1, and more than 4 axes fail
    Caffe's CHECK. Layers that ``top->Reshape(num, channels, height, width)`` (MVN, the
    forks' BN and Interp) so make a 4-D top of any bottom."""
    if len(b) > 4:
        raise ctx.error(
            f"takes at most 4 axes (Caffe's legacy num/channels/height/width), got {list(b)}",
            hint="Caffe CHECKs 'Cannot use legacy accessors on Blobs with > 4 axes'")
    n, c, h, w = (*b, 1, 1, 1, 1)[:4]
    return (n, c, h, w)


@dataclass(frozen=True)
class MVNParams:
    normalize_variance: bool = field(
        default=True, metadata=doc("also divide by the standard deviation (false: mean only)"))
    across_channels: bool = field(
        default=False, metadata=doc("normalise each item over C*H*W, not each channel's H*W"))
    eps: float = field(
        default=1e-9, metadata=doc("added to the standard deviation (not the variance)"))


@register
class MVN(LayerType[MVNParams]):
    """(x - mean) / (std + eps) over each channel plane or item (Caffe MVNLayer).

    BVLC/caffe ``src/caffe/layers/mvn_layer.cpp``: the biased standard deviation, ``eps``
    added after the square root; the top is ``(num, channels, height, width)``, so a 2-D
    bottom gives a 4-D top. No learnable blobs.
    """

    fresh_output = True
    Params = MVNParams

    def shape(self, p: MVNParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        return (legacy_nchw(bottoms[0], ctx),)

    def sharding(self, p: MVNParams, bottoms: tuple[Shape, ...]) -> Sharding:
        """Each channel plane on its own, unless the statistics span the channels."""
        return Sharding(Split.FOLLOW, Follow.NONE if p.across_channels else Follow.CHANNELS)

    def lower(self, p: MVNParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import normalization

        return Call(normalization.mvn, {"normalize_variance": p.normalize_variance,
                                        "across_channels": p.across_channels, "eps": p.eps})
