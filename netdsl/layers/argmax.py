"""ArgMax (Caffe ArgMaxLayer): the indices (and values) of the top k entries."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis, count


@dataclass(frozen=True)
class ArgMaxParams:
    out_max_val: bool = field(default=False, metadata=doc("also (or, with axis, only) values"))
    top_k: int = field(default=1, metadata=doc("how many of the largest entries"))
    axis: int | None = field(
        default=None, metadata=doc("axis to search; unset: all but the batch axis"))


@register
class ArgMax(LayerType[ArgMaxParams]):
    """Indices (or values) of the top_k largest entries (Caffe ArgMaxLayer, argmax_layer.cpp).

    Without ``axis``, per item over all its entries: a (N, 1, top_k) top of indices, or
    with ``out_max_val`` (N, 2, top_k) of indices then values (padded with 1s to the
    bottom's number of axes). With ``axis``: the bottom's shape with top_k along it,
    holding indices, or with ``out_max_val`` values. Of equal values the later index
    comes first, as in Caffe's sort. Indices are numbers of the blob's type. Caffe has no
    backward for it: no gradient goes through.
    """

    caffe_names = ("ARGMAX",)
    caffe_params = ("argmax_param",)
    Params = ArgMaxParams

    def shape(self, p: ArgMaxParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if p.top_k < 1:
            raise ctx.error(f"top_k must be at least 1, got {p.top_k}", "top_k")
        if p.axis is not None:
            axis = canonical_axis(p.axis, len(b), ctx)
            if p.top_k > b[axis]:
                raise ctx.error(f"top_k {p.top_k} is more than the {b[axis]} entries of axis "
                                f"{axis}", "top_k")
            return ((*b[:axis], p.top_k, *b[axis + 1:]),)
        if not b:
            raise ctx.error("needs a blob with a batch axis")
        per_item = count(b[1:])
        if p.top_k > per_item:
            raise ctx.error(f"top_k {p.top_k} is more than the {per_item} entries of an item",
                            "top_k")
        top = [1] * max(len(b), 3)
        top[0], top[1], top[2] = b[0], 2 if p.out_max_val else 1, p.top_k
        return (tuple(top),)

    def lower(self, p: ArgMaxParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        axis = None if p.axis is None else p.axis % len(bottoms[0])
        return Call(plumbing.argmax, {"top_k": p.top_k, "out_max_val": p.out_max_val,
                                      "axis": axis})
