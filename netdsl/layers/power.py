"""Power (Caffe PowerLayer): y = (shift + scale * x) ^ power."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Follow, Kernel, LayerType, Shape


@dataclass(frozen=True)
class PowerParams:
    power: float = field(default=1.0, metadata=doc("exponent"))
    scale: float = field(default=1.0, metadata=doc("multiplier applied to x first"))
    shift: float = field(default=0.0, metadata=doc("added after scaling, before the power"))


@register
class Power(LayerType[PowerParams]):
    """y = (shift + scale * x) ^ power (Caffe PowerLayer)."""

    caffe_names = ("POWER",)
    follow = Follow.ELEMENTWISE
    Params = PowerParams

    def lower(self, p: PowerParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.power, {"power": p.power, "scale": p.scale,
                                            "shift": p.shift})
