"""Threshold (Caffe ThresholdLayer): y = 1 if x > threshold else 0."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape


@dataclass(frozen=True)
class ThresholdParams:
    threshold: float = field(default=0.0, metadata=doc("outputs 1 where x is above this"))


@register
class Threshold(LayerType[ThresholdParams]):
    """y = 1 if x > threshold else 0, no gradient (Caffe ThresholdLayer, threshold_layer.cpp)."""

    caffe_names = ("THRESHOLD",)
    follow = Follow.ELEMENTWISE
    Params = ThresholdParams

    def lower(self, p: ThresholdParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.threshold, {"threshold": p.threshold})
