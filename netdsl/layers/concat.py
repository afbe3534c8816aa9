"""Concat (Caffe ConcatLayer): join blobs along one axis."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Alias, Arity, Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis


@dataclass(frozen=True)
class ConcatParams:
    axis: int = field(default=1, metadata=doc("axis to join along (negative: from the end)"))
    concat_dim: int | None = field(
        default=None, metadata=doc("deprecated alias for axis; no negative values")
    )


def legacy_axis(
    axis: int, legacy: int | None, legacy_name: str, ndim: int, ctx: ShapeContext
) -> int:
    """Caffe's `axis` vs deprecated `concat_dim`/`slice_dim` resolution (never both)."""
    if legacy is not None:
        if "axis" in ctx.field_spans or axis != 1:
            raise ctx.error(f"give either axis or {legacy_name}, not both", legacy_name)
        if not 0 <= legacy < ndim:
            raise ctx.error(
                f"{legacy_name} {legacy} is out of range for a {ndim}-D blob", legacy_name,
                f"{legacy_name} takes no negative values; use axis for that",
            )
        return legacy
    return canonical_axis(axis, ndim, ctx)


@register
class Concat(LayerType[ConcatParams]):
    """Joins its bottoms along `axis`; all other dimensions must agree (Caffe ConcatLayer)."""

    caffe_names = ("CONCAT",)
    bottoms = Arity(1)
    tops = Arity.exact(1)
    Params = ConcatParams

    def shape(
        self, p: ConcatParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        first = bottoms[0]
        axis = legacy_axis(p.axis, p.concat_dim, "concat_dim", len(first), ctx)
        total = first[axis]
        for i, b in enumerate(bottoms[1:], start=1):
            if len(b) != len(first):
                raise ctx.error(
                    f"bottom {i} {list(b)} has {len(b)} axes, but bottom 0 {list(first)} "
                    f"has {len(first)}", "bottom", "all inputs must have the same number of axes",
                )
            diff = [j for j in range(len(first)) if j != axis and b[j] != first[j]]
            if diff:
                raise ctx.error(
                    f"bottom {i} {list(b)} does not match bottom 0 {list(first)} on axis "
                    f"{diff[0]}; only the concat axis {axis} may differ", "bottom",
                )
            total += b[axis]
        return ((*first[:axis], total, *first[axis + 1:]),)

    def lower(self, p: ConcatParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        if len(bottoms) == 1:
            return Alias()
        axis = p.concat_dim if p.concat_dim is not None else p.axis % len(bottoms[0])
        return Call(plumbing.concat, {"axis": axis})
