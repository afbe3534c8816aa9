"""InnerProduct (Caffe InnerProductLayer): a fully connected layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import doc
from . import register
from .base import Filler, LayerType, Shape, ShapeContext, Split, canonical_axis, count

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class InnerProductParams:
    num_output: int = field(metadata=doc("number of output neurons"))
    bias_term: bool = field(default=True, metadata=doc("learn a bias per neuron"))
    weight_filler: Filler = field(default=Filler(), metadata=doc("weight initialiser"))
    bias_filler: Filler = field(default=Filler(), metadata=doc("bias initialiser"))
    axis: int = field(default=1, metadata=doc("axes from this one on are flattened into inputs"))
    transpose: bool = field(default=False, metadata=doc("store the weight as (inputs, outputs)"))


@register
class InnerProduct(LayerType):
    """Fully connected: every output neuron sees every input (Caffe InnerProductLayer)."""

    caffe_names = ("INNER_PRODUCT", "FullyConnected")
    blobs = ("weight", "bias")
    split = Split.CHANNELS
    Params = InnerProductParams

    def shape(self, p: InnerProductParams, bottoms: tuple[Shape, ...], ctx: ShapeContext):
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

    def macs(self, p: InnerProductParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]):
        return count(tops[0]) * self._k(p, bottoms[0])

    def fillers(self, p: InnerProductParams) -> dict[str, Filler]:
        return {"weight": p.weight_filler, "bias": p.bias_filler}

    def lower(self, p: InnerProductParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import InnerProduct as Module

        return Module(self.param_shapes(p, bottoms), p.axis % len(bottoms[0]), p.transpose)
