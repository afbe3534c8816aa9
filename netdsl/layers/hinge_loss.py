"""HingeLoss (BVLC caffe ``hinge_loss_layer.cpp``): one-versus-all hinge, L1 or L2."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext
from .softmax_with_loss import check_loss_bottoms


class HingeNorm(CaffeEnum):
    """HingeLossParameter.Norm (BVLC caffe.proto): numbered from 1."""

    L1 = 1
    L2 = 2


@dataclass(frozen=True)
class HingeLossParams:
    norm: HingeNorm = field(default=HingeNorm.L1, metadata=doc("L1: sum of hinges; L2: of squares"))


@register
class HingeLoss(LayerType[HingeLossParams]):
    """One-versus-all hinge loss of N rows of class scores (Caffe HingeLossLayer).

    ``m = max(0, 1 + s x)``, ``s`` = -1 at the true class and 1 elsewhere; the loss is
    ``sum(m) / N`` (L1) or ``sum(m^2) / N`` (L2). Bottoms: scores (flattened per item)
    and one integer label per item.
    """

    caffe_names = ("HINGE_LOSS",)
    bottoms = Arity.exact(2)
    tops = Arity.exact(1)
    role = Role.LOSS
    reads_class_scores = True
    Params = HingeLossParams

    def shape(self, p: HingeLossParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        check_loss_bottoms(bottoms, ctx)  # Caffe checks nothing else (LossLayer::Reshape)
        return ((),)

    def lower(self, p: HingeLossParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import losses

        return Call(losses.hinge_loss, {"norm": p.norm.name})
