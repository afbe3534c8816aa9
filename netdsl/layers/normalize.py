"""Normalize (fork: SSD's Caffe, weiliu89/caffe, src/caffe/layers/normalize_layer.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from ._detection import legacy_dim
from .base import Filler, FillerType, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class NormalizeParams:
    across_spatial: bool = field(
        default=True, metadata=doc("one L2 norm per example (false: one per pixel)")
    )
    scale_filler: Filler = field(
        default=Filler(FillerType.constant, value=1.0),
        metadata=doc("scale initialiser (default constant 1; SSD uses 20)"),
    )
    channel_shared: bool = field(
        default=True, metadata=doc("one learned scale for all channels (false: per channel)")
    )
    eps: float = field(default=1e-10, metadata=doc("added to the sum of squares"))


def _check(bottom: Shape, ctx: ShapeContext) -> int:
    """The channel count, after LayerSetUp's axis check."""
    if len(bottom) < 2:
        raise ctx.error(f"needs at least 2 axes (N, C, ...), got {list(bottom)}")
    return legacy_dim(bottom, 1, ctx)


@register
class Normalize(LayerType[NormalizeParams]):
    """L2 norm per example or pixel, times a learned scale (fork: SSD's Caffe, weiliu89/caffe).

    ``across_spatial: false`` divides each pixel's channel vector by its norm, SSD's
    conv4_3_norm (with ``channel_shared: false`` and ``scale_filler`` constant 20, after
    ParseNet). The norm is sqrt(sum of squares + eps). Learnable blob ``scale``: a scalar
    (``channel_shared``) or one per channel.
    """

    caffe_params = ("norm_param",)
    blobs = ("scale",)
    legacy_blob_axes = (1,)
    fresh_output = True
    Params = NormalizeParams
    fork = "SSD (weiliu89/caffe)"

    def shape(
        self, p: NormalizeParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        _check(bottoms[0], ctx)
        return (bottoms[0],)

    def param_shapes(self, p: NormalizeParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        c = _check(bottoms[0], ShapeContext.detached(self.name))
        return {"scale": () if p.channel_shared else (c,)}

    def fillers(self, p: NormalizeParams) -> dict[str, Filler]:
        return {"scale": p.scale_filler}

    def lower(self, p: NormalizeParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.detection import Normalize as NormalizeKernel

        c = _check(bottoms[0], ShapeContext.detached(self.name))
        return NormalizeKernel(c, p.across_spatial, p.channel_shared, p.eps)
