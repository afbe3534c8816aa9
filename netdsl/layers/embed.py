"""Embed (Caffe EmbedLayer): a learned lookup table indexed by the input values."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Filler, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class EmbedParams:
    num_output: int = field(default=0, metadata=doc("length of each embedding vector"))
    input_dim: int = field(
        default=0, metadata=doc("number of table rows: 1 more than the largest input value"))
    bias_term: bool = field(default=True, metadata=doc("add a learned bias per output"))
    weight_filler: Filler = field(default=Filler(), metadata=doc("table initialiser"))
    bias_filler: Filler = field(default=Filler(), metadata=doc("bias initialiser"))


@register
class Embed(LayerType[EmbedParams]):
    """Each input value picks a row of a learned table (Caffe EmbedLayer, embed_layer.cpp).

    The input holds integers (as numbers; Caffe truncates them) in [0, input_dim); the
    top is the input's shape with num_output appended. ``weight`` is (input_dim,
    num_output), the transpose of an InnerProduct's, as in Caffe; the input gets no
    gradient. A lookup does no multiply-accumulates: MACs 0.
    """

    blobs = ("weight", "bias")
    legacy_blob_axes = (2, 1)
    fresh_output = True
    Params = EmbedParams

    def shape(self, p: EmbedParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if p.num_output < 1:
            raise ctx.error("num_output must be positive", "num_output")
        if p.input_dim < 1:
            raise ctx.error("input_dim must be positive", "input_dim",
                            "the number of distinct input values (the largest + 1)")
        return ((*bottoms[0], p.num_output),)

    def param_shapes(self, p: EmbedParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {"weight": (p.input_dim, p.num_output)}
        if p.bias_term:
            shapes["bias"] = (p.num_output,)
        return shapes

    def fillers(self, p: EmbedParams) -> dict[str, Filler]:
        return {"weight": p.weight_filler, "bias": p.bias_filler}

    def lower(self, p: EmbedParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.convolution import Embed as Module

        return Module(self.param_shapes(p, bottoms))
