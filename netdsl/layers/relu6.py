"""ReLU6 (fork: the MobileNet Caffe forks; not in BVLC): y = min(max(x, 0), 6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Engine, Follow, Kernel, LayerType, Shape


@dataclass(frozen=True)
class ReLU6Params:
    negative_slope: float = field(
        default=0.0, metadata=doc("slope for negative inputs (0: plain ReLU6)"))
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


@register
class ReLU6(LayerType[ReLU6Params]):
    """y = min(max(x, 0), 6) (fork: MobileNet's Caffe forks; not in BVLC).

    As eric612/MobileNet-YOLO's ``src/caffe/layers/relu6_layer.cpp`` has it (fields in
    ``relu6_param``; NVIDIA/caffe's ReLU6 reads the same ``negative_slope`` from
    ``relu_param``, and both blocks are read here): ``min(max(x, 0) + negative_slope *
    min(x, 0), 6)``, with the fork's gradient, 1 on (0, 6), ``negative_slope`` at or
    below 0 and 0 from 6 up.
    """

    fork = "MobileNet forks"

    follow = Follow.ELEMENTWISE
    caffe_params = ("relu6_param", "relu_param")
    Params = ReLU6Params

    def lower(self, p: ReLU6Params, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return Call(elementwise.relu6, {"negative_slope": p.negative_slope})
