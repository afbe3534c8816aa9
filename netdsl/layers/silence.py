"""Silence (Caffe SilenceLayer): consume blobs so they are not reported as outputs."""

from __future__ import annotations

from . import register
from .base import Arity, LayerType, NoParams, Role, Shape, ShapeContext, Sharding, Split


@register
class Silence(LayerType[NoParams]):
    """Takes any number of bottoms and makes no tops (Caffe SilenceLayer)."""

    caffe_names = ("SILENCE",)
    role = Role.SINK
    bottoms = Arity(1)
    tops = Arity.exact(0)
    Params = NoParams

    def shape(
        self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return ()

    def sharding(self, p: NoParams, bottoms: tuple[Shape, ...]) -> Sharding:
        return Sharding(Split.FOLLOW, computes=False)  # reads nothing at run time
