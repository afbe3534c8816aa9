"""InnerProduct (Caffe InnerProductLayer): a fully connected layer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..fields import doc
from . import register
from .base import (
    Filler,
    Kernel,
    LayerType,
    Shape,
    ShapeContext,
    Sharding,
    Split,
    canonical_axis,
    count,
)


@dataclass(frozen=True)
class InnerProductParams:
    num_output: int = field(metadata=doc("number of output neurons"))
    bias_term: bool = field(default=True, metadata=doc("learn a bias per neuron"))
    weight_filler: Filler = field(default=Filler(), metadata=doc("weight initialiser"))
    bias_filler: Filler = field(default=Filler(), metadata=doc("bias initialiser"))
    axis: int = field(default=1, metadata=doc("axes from this one on are flattened into inputs"))
    transpose: bool = field(default=False, metadata=doc("store the weight as (inputs, outputs)"))


@register
class InnerProduct(LayerType[InnerProductParams]):
    """Fully connected: every output neuron sees every input (Caffe InnerProductLayer)."""

    caffe_names = ("INNER_PRODUCT", "FullyConnected")
    blobs = ("weight", "bias")
    legacy_blob_axes = (2, 1)
    split = Split.CHANNELS
    fresh_output = True
    Params = InnerProductParams

    def shape(
        self, p: InnerProductParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if p.num_output < 1:
            raise ctx.error("num_output must be positive", "num_output")
        axis = canonical_axis(p.axis, len(b), ctx)
        return ((*b[:axis], p.num_output),)

    def _k(self, p: InnerProductParams, b: Shape) -> int:
        return count(b[p.axis % len(b):])

    def param_shapes(self, p: InnerProductParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        k = self._k(p, bottoms[0])
        w = (k, p.num_output) if p.transpose else (p.num_output, k)
        return {"weight": w, "bias": (p.num_output,)} if p.bias_term else {"weight": w}

    def macs(self, p: InnerProductParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
             ) -> int:
        return count(tops[0]) * self._k(p, bottoms[0])

    def fillers(self, p: InnerProductParams) -> dict[str, Filler]:
        return {"weight": p.weight_filler, "bias": p.bias_filler}

    def sharding(self, p: InnerProductParams, bottoms: tuple[Shape, ...]) -> Sharding:
        return Sharding(Split.CHANNELS, outputs=p.num_output, axis=p.axis % len(bottoms[0]))

    def shard_params(self, p: InnerProductParams, outputs: tuple[int, int]
                     ) -> InnerProductParams:
        return replace(p, num_output=outputs[1] - outputs[0])

    def lower(self, p: InnerProductParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.convolution import InnerProduct as Module

        return Module(self.param_shapes(p, bottoms), p.axis % len(bottoms[0]), p.transpose)
