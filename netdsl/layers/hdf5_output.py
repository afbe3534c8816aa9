"""HDF5Output (Caffe HDF5OutputLayer): a sink that Caffe writes to an HDF5 file."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, LayerType, Role, Shape, ShapeContext, Sharding, Split


@dataclass(frozen=True)
class HDF5OutputParams:
    file_name: str = field(default="", metadata=doc("the HDF5 file Caffe writes"))


@register
class HDF5Output(LayerType[HDF5OutputParams]):
    """Takes data and label and makes no tops; netdsl writes no file (Caffe HDF5OutputLayer).

    Caffe saves the two bottoms to ``file_name`` (datasets "data" and "label") on every
    forward pass. netdsl checks the bottoms as Caffe does (same batch, at most 4 axes)
    and otherwise treats the layer as a sink like Silence: nothing is computed or written.
    To keep outputs, read the blobs from the compiled net's outputs instead.
    From src/caffe/layers/hdf5_output_layer.cpp.
    """

    caffe_names = ("HDF5_OUTPUT",)
    role = Role.SINK
    bottoms = Arity.exact(2)
    tops = Arity.exact(0)
    Params = HDF5OutputParams

    def shape(self, p: HDF5OutputParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        data, label = bottoms
        for i, b in enumerate(bottoms):
            if not b or len(b) > 4:
                raise ctx.error(f"bottom {i} must have 1 to 4 axes (Caffe saves it as "
                                f"num, channels, height, width), got {list(b)}")
        if data[0] != label[0]:
            raise ctx.error(f"data and label must have the same batch: {data[0]} and "
                            f"{label[0]}")
        return ()

    def sharding(self, p: HDF5OutputParams, bottoms: tuple[Shape, ...]) -> Sharding:
        return Sharding(Split.FOLLOW, computes=False)  # reads nothing at run time
