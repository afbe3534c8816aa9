"""Scale (Caffe ScaleLayer): multiply by a learned or given blob, optionally add a bias."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Filler, FillerType, Kernel, LayerType, Shape, ShapeContext, canonical_axis
from .bias import learned_shape, operand_axis


@dataclass(frozen=True)
class ScaleParams:
    axis: int = field(default=1, metadata=doc("first bottom axis the scale applies to"))
    num_axes: int = field(
        default=1, metadata=doc("axes the learned scale covers (-1: to the end, 0: a scalar)")
    )
    filler: Filler = field(
        default=Filler(FillerType.constant, value=1.0),
        metadata=doc("scale initialiser (default constant 1)"),
    )
    bias_term: bool = field(default=False, metadata=doc("also learn a bias (Scale + Bias)"))
    bias_filler: Filler = field(default=Filler(), metadata=doc("bias initialiser (default 0)"))


def _bias_axes(p: ScaleParams, bottoms: tuple[Shape, ...]) -> int:
    """Caffe's ScaleLayer builds its bias with num_axes = bottom[1]'s axes if given."""
    return len(bottoms[1]) if len(bottoms) == 2 else p.num_axes


@register
class Scale(LayerType[ScaleParams]):
    """top = bottom * scale (+ bias), broadcast from `axis` (Caffe ScaleLayer).

    With two bottoms the second is the scale; with one, the scale is learned ("weight").
    BatchNorm + Scale(bias_term: true) is Caffe's batch normalisation with affine part.
    """

    bottoms = Arity(1, 2)
    tops = Arity.exact(1)
    blobs = ("weight", "bias")
    legacy_blob_axes = (1, 1)
    fresh_output = True
    Params = ScaleParams

    def shape(
        self, p: ScaleParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(bottoms) == 2:
            operand_axis(b, bottoms[1], p.axis, ctx, "scale")
        else:
            learned_shape(b, p.axis, p.num_axes, ctx, "scale")
        if p.bias_term:
            learned_shape(b, p.axis, _bias_axes(p, bottoms), ctx, "bias")
        return (b,)

    def param_shapes(self, p: ScaleParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        ctx = ShapeContext.detached(self.name)
        b = bottoms[0]
        shapes: dict[str, Shape] = {}
        if len(bottoms) == 1:
            shapes["weight"] = learned_shape(b, p.axis, p.num_axes, ctx, "scale")
        if p.bias_term:
            shapes["bias"] = learned_shape(b, p.axis, _bias_axes(p, bottoms), ctx, "bias")
        return shapes

    def fillers(self, p: ScaleParams) -> dict[str, Filler]:
        return {"weight": p.filler, "bias": p.bias_filler}

    def lower(self, p: ScaleParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.normalization import ScaleBias

        ctx = ShapeContext.detached(self.name)
        b = bottoms[0]
        shapes = self.param_shapes(p, bottoms)
        if len(bottoms) == 2:
            w_axis = operand_axis(b, bottoms[1], p.axis, ctx, "scale")
        else:
            w_axis = canonical_axis(p.axis, len(b), ctx) if shapes["weight"] else 0
        bias = shapes.get("bias")
        b_axis = canonical_axis(p.axis, len(b), ctx) if bias else 0
        return ScaleBias(shapes.get("weight"), w_axis, bias, b_axis,
                         scale_from_bottom=len(bottoms) == 2)
