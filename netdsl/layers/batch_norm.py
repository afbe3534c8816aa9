"""BatchNorm (Caffe BatchNormLayer): normalise each channel; no scale or shift of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Filler, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class BatchNormParams:
    use_global_stats: bool | None = field(
        default=None,
        metadata=doc("use the stored mean/variance (unset: true in TEST, false in TRAIN)"),
    )
    moving_average_fraction: float = field(
        default=0.999, metadata=doc("decay of the running mean/variance per iteration")
    )
    eps: float = field(default=1e-5, metadata=doc("added to the variance before the sqrt"))


@register
class BatchNorm(LayerType[BatchNormParams]):
    """(x - mean) / sqrt(var + eps) per channel (Caffe BatchNormLayer; pair it with Scale).

    Its three Caffe blobs (running mean and variance, both scaled by ``scale_factor``)
    are statistics, not learned: the torch module keeps them as buffers.
    """

    blobs = ("mean", "variance", "scale_factor")
    legacy_blob_axes = (1, 1, 1)
    learned = False
    fresh_output = True
    Params = BatchNormParams

    def shape(
        self, p: BatchNormParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(b) < 2:
            raise ctx.error(f"needs a blob with a channel axis, got shape {list(b)}")
        return (b,)

    def param_shapes(self, p: BatchNormParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        c = bottoms[0][1]
        return {"mean": (c,), "variance": (c,), "scale_factor": (1,)}

    def fillers(self, p: BatchNormParams) -> dict[str, Filler]:
        return {name: Filler() for name in self.blobs}  # Caffe zero-fills all three

    def lower(self, p: BatchNormParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.normalization import BatchNorm as Module

        return Module(bottoms[0][1], p.use_global_stats, p.moving_average_fraction, p.eps)
