"""Bias (Caffe BiasLayer): add a learned or given blob, broadcast over the other axes.

Also home of the broadcasting rules that Scale shares: an operand of k axes applies to
bottom axes axis..axis+k-1 and is repeated over the axes before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Filler, Kernel, LayerType, Shape, ShapeContext, canonical_axis


@dataclass(frozen=True)
class BiasParams:
    axis: int = field(default=1, metadata=doc("first bottom axis the bias applies to"))
    num_axes: int = field(
        default=1, metadata=doc("axes the learned bias covers (-1: to the end, 0: a scalar)")
    )
    filler: Filler = field(default=Filler(), metadata=doc("bias initialiser (default 0)"))


def learned_shape(bottom: Shape, axis: int, num_axes: int, ctx: ShapeContext, what: str
                  ) -> Shape:
    """Shape of a learned operand (one bottom): bottom[axis : axis + num_axes]."""
    a = canonical_axis(axis, len(bottom), ctx)
    if num_axes < -1:
        raise ctx.error(
            f"num_axes must be non-negative, or -1 to extend to the end; got {num_axes}",
            "num_axes",
        )
    if num_axes >= 0 and a + num_axes > len(bottom):
        raise ctx.error(
            f"the {what} would cover axes {a}..{a + num_axes - 1}, past the end of the "
            f"bottom {list(bottom)}", "num_axes",
        )
    return bottom[a:] if num_axes == -1 else bottom[a:a + num_axes]


def _where(ctx: ShapeContext) -> str:
    """Point an operand mismatch at `axis` if the user wrote it, else at the bottoms."""
    return "axis" if "axis" in ctx.field_spans else "bottom"


def operand_axis(bottom: Shape, operand: Shape, axis: int, ctx: ShapeContext, what: str
                 ) -> int:
    """Caffe's Scale/BiasLayer::Reshape checks; the bottom axis the operand starts at.

    A scalar operand ignores ``axis`` entirely (Caffe sets it to 0 without checking it).
    """
    if not operand:
        return 0
    a = canonical_axis(axis, len(bottom), ctx)
    if a + len(operand) > len(bottom):
        raise ctx.error(
            f"the {what} {list(operand)} applied from axis {a} runs past the end of the "
            f"bottom {list(bottom)}", _where(ctx),
        )
    for i, d in enumerate(operand):
        if bottom[a + i] != d:
            raise ctx.error(
                f"the {what} {list(operand)} does not match the bottom {list(bottom)} at "
                f"axis {a + i} ({d} vs {bottom[a + i]})", _where(ctx),
                f"from axis {a}, the {what} should have shape "
                f"{list(bottom[a:a + len(operand)])}",
            )
    return a


@register
class Bias(LayerType[BiasParams]):
    """top = bottom + bias, the bias broadcast from `axis` (Caffe BiasLayer).

    With two bottoms the second is the bias; with one, the bias is learned.
    """

    bottoms = Arity(1, 2)
    tops = Arity.exact(1)
    blobs = ("bias",)
    legacy_blob_axes = (1,)
    fresh_output = True
    Params = BiasParams

    def shape(
        self, p: BiasParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(bottoms) == 2:
            operand_axis(b, bottoms[1], p.axis, ctx, "bias")
        else:
            learned_shape(b, p.axis, p.num_axes, ctx, "bias")
        return (b,)

    def param_shapes(self, p: BiasParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        if len(bottoms) == 2:
            return {}
        ctx = ShapeContext.detached(self.name)
        return {"bias": learned_shape(bottoms[0], p.axis, p.num_axes, ctx, "bias")}

    def fillers(self, p: BiasParams) -> dict[str, Filler]:
        return {"bias": p.filler}

    def lower(self, p: BiasParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.normalization import ScaleBias

        ctx = ShapeContext.detached(self.name)
        b = bottoms[0]
        if len(bottoms) == 2:
            axis = operand_axis(b, bottoms[1], p.axis, ctx, "bias")
            return ScaleBias(None, axis, None, axis, bias_from_bottom=True)
        shape = learned_shape(b, p.axis, p.num_axes, ctx, "bias")
        return ScaleBias(None, 0, shape, canonical_axis(p.axis, len(b), ctx) if shape else 0)
