"""Parameterless element-wise layers: Sigmoid, TanH, AbsVal, BNLL (Caffe NeuronLayers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Engine, Follow, Kernel, LayerType, NoParams, Shape


@dataclass(frozen=True)
class EngineParams:
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


@register
class Sigmoid(LayerType[EngineParams]):
    """y = 1 / (1 + exp(-x)) (Caffe SigmoidLayer)."""

    caffe_names = ("SIGMOID",)
    follow = Follow.ELEMENTWISE
    Params = EngineParams

    def lower(self, p: EngineParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        import torch

        return Call(torch.sigmoid)


@register
class TanH(LayerType[EngineParams]):
    """y = tanh(x) (Caffe TanHLayer)."""

    caffe_names = ("TANH",)
    follow = Follow.ELEMENTWISE
    Params = EngineParams

    def lower(self, p: EngineParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        import torch

        return Call(torch.tanh)


@register
class AbsVal(LayerType[NoParams]):
    """y = |x| (Caffe AbsValLayer)."""

    caffe_names = ("ABSVAL",)
    follow = Follow.ELEMENTWISE
    Params = NoParams

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        import torch

        return Call(torch.abs)


@register
class BNLL(LayerType[NoParams]):
    """Binomial normal log likelihood: y = log(1 + exp(x)) (Caffe BNLLLayer)."""

    caffe_names = ("BNLL",)
    follow = Follow.ELEMENTWISE
    Params = NoParams

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.bnll)
