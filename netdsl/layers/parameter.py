"""Parameter (Caffe ParameterLayer): a learnable blob, given as the layer's top."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Filler, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class ParameterParams:
    shape: tuple[int, ...] = field(
        default=(), metadata=doc("the blob's full shape (no batch is added); [] a scalar"))


@register
class Parameter(LayerType[ParameterParams]):
    """A learnable blob of the given shape as the top (Caffe ParameterLayer).

    No bottoms; the top is the blob ``value`` itself (Caffe shares its data and diff), so
    the layers reading it train it. Caffe does not fill it: a new blob is zeros, and so is
    this one until weights are loaded. From include/caffe/layers/parameter_layer.hpp.
    """

    bottoms = Arity.exact(0)
    tops = Arity.exact(1)
    blobs = ("value",)
    Params = ParameterParams

    def shape(self, p: ParameterParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if any(d < 0 for d in p.shape):
            raise ctx.error(f"shape {list(p.shape)} has a negative dimension", "shape")
        return (p.shape,)

    def param_shapes(self, p: ParameterParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        return {"value": p.shape}

    def fillers(self, p: ParameterParams) -> dict[str, Filler]:
        return {"value": Filler()}  # constant 0: Caffe's fresh blob

    def lower(self, p: ParameterParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        return plumbing.LearnedBlob(p.shape)
