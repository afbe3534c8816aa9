"""Filter (Caffe FilterLayer): keep the items whose selector is non-zero."""

from __future__ import annotations

from . import register
from .base import Arity, Call, Kernel, LayerType, NoParams, Shape, ShapeContext


@register
class Filter(LayerType[NoParams]):
    """Items with a non-zero selector (last bottom); shapes: the batch, a bound (Caffe FilterLayer).

    The number of items out depends on the data, so no shape rule can know it. netdsl
    gives what Caffe's own first Reshape gives (filter_layer.cpp, ``first_reshape_``): the
    whole batch, an upper bound, so ``netdsl shapes`` shows each top as its bottom's
    shape. At run time the kernel returns only the selected items (the batch axis
    shrinks, down to 0), as Caffe does; a later layer that needs the full batch sees the
    smaller one, as in Caffe. Under ``torch.compile`` this layer is a graph break: a size
    that depends on the data cannot be traced. Gradients reach the selected items only,
    none reaches the selector.
    """

    bottoms = Arity(2)
    tops = Arity(1)
    Params = NoParams

    def shape(self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        *data, selector = bottoms
        if len(ctx.tops) != len(data):
            raise ctx.error(f"needs one top per bottom but the selector: {len(data)} tops, "
                            f"got {len(ctx.tops)}", "top")
        if not selector or any(d != 1 for d in selector[1:]):
            raise ctx.error(f"the selector (last bottom) must be (N) or (N, 1, ...), got "
                            f"{list(selector)}")
        for i, b in enumerate(data):
            if not b or b[0] != selector[0]:
                raise ctx.error(f"bottom {i} {list(b)} does not have the selector's "
                                f"{selector[0]} items")
        return tuple(data)

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        return Call(plumbing.filter_items)
