"""Parameterless element-wise layers: Sigmoid, TanH, AbsVal, BNLL (Caffe NeuronLayers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..fields import doc
from . import register
from .base import LayerType, NoParams, Shape

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EngineParams:
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect"))


@register
class Sigmoid(LayerType):
    """y = 1 / (1 + exp(-x)) (Caffe SigmoidLayer)."""

    caffe_names = ("SIGMOID",)
    Params = EngineParams

    def lower(self, p: EngineParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import Sigmoid as Module

        return Module()


@register
class TanH(LayerType):
    """y = tanh(x) (Caffe TanHLayer)."""

    caffe_names = ("TANH",)
    Params = EngineParams

    def lower(self, p: EngineParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import TanH as Module

        return Module()


@register
class AbsVal(LayerType):
    """y = |x| (Caffe AbsValLayer)."""

    caffe_names = ("ABSVAL",)
    Params = NoParams

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import AbsVal as Module

        return Module()


@register
class BNLL(LayerType):
    """Binomial normal log likelihood: y = log(1 + exp(x)) (Caffe BNLLLayer)."""

    caffe_names = ("BNLL",)
    Params = NoParams

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> torch.nn.Module:
        from ._modules import BNLL as Module

        return Module()
