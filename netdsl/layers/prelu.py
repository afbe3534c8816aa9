"""PReLU (Caffe PReLULayer): ReLU with a learned slope for negative inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Filler, FillerType, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class PReLUParams:
    filler: Filler = field(
        default=Filler(FillerType.constant, value=0.25),
        metadata=doc("slope initialiser (default constant 0.25)"),
    )
    channel_shared: bool = field(
        default=False, metadata=doc("one slope for all channels instead of one per channel")
    )


@register
class PReLU(LayerType[PReLUParams]):
    """max(x, 0) + a * min(x, 0) with a learned per channel (Caffe PReLULayer)."""

    blobs = ("weight",)
    legacy_blob_axes = (1,)
    Params = PReLUParams

    def shape(
        self, p: PReLUParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(b) < 2:
            raise ctx.error(f"needs a bottom with at least 2 axes, got shape {list(b)}")
        return (b,)

    def param_shapes(self, p: PReLUParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        # Caffe: a 0-axis blob when shared, else one slope per channel (axis 1).
        return {"weight": () if p.channel_shared else (bottoms[0][1],)}

    def fillers(self, p: PReLUParams) -> dict[str, Filler]:
        return {"weight": p.filler}

    def lower(self, p: PReLUParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return elementwise.PReLU(self.param_shapes(p, bottoms)["weight"])
