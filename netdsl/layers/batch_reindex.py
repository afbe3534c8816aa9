"""BatchReindex (Caffe BatchReindexLayer): pick items of the batch by index."""

from __future__ import annotations

from . import register
from .base import Arity, Call, Kernel, LayerType, NoParams, Shape, ShapeContext


@register
class BatchReindex(LayerType[NoParams]):
    """Item n of the top is item index[n] of bottom 0 (Caffe BatchReindexLayer).

    Bottoms: the data and a 1-D blob of indices (as numbers; an index outside the batch
    is an error when the kernel runs, as Caffe's check in its forward). The top has one
    item per index. From src/caffe/layers/batch_reindex_layer.cpp.
    """

    bottoms = Arity.exact(2)
    tops = Arity.exact(1)
    Params = NoParams

    def shape(self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        data, index = bottoms
        if len(index) != 1:
            raise ctx.error(f"the indices (bottom 1) must be a 1-D blob, got {list(index)}")
        if not data:
            raise ctx.error("the data (bottom 0) has no batch axis")
        return ((index[0], *data[1:]),)

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        return Call(plumbing.batch_reindex)
