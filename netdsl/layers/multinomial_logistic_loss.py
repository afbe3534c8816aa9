"""MultinomialLogisticLoss (BVLC caffe ``multinomial_logistic_loss_layer.cpp``)."""

from __future__ import annotations

from . import register
from .base import Arity, Call, Kernel, LayerType, NoParams, Role, Shape, ShapeContext
from .contrastive_loss import legacy_dims
from .softmax_with_loss import check_loss_bottoms


@register
class MultinomialLogisticLoss(LayerType[NoParams]):
    """-log of each item's label probability, averaged (Caffe MultinomialLogisticLossLayer).

    Bottoms: probabilities (N rows, e.g. a Softmax's output) and one label per item.
    Probabilities are clamped at 1e-20 before the log (Caffe's kLOG_THRESHOLD).
    """

    caffe_names = ("MULTINOMIAL_LOGISTIC_LOSS",)
    bottoms = Arity.exact(2)
    tops = Arity.exact(1)
    role = Role.LOSS
    Params = NoParams

    def shape(self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        check_loss_bottoms(bottoms, ctx)
        _, c, h, w = legacy_dims(bottoms[1], ctx, "label")
        if (c, h, w) != (1, 1, 1):
            raise ctx.error(f"the label must hold one value per item (N x 1 x 1 x 1), got "
                            f"{list(bottoms[1])}", "bottom")
        return ((),)

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import losses

        return Call(losses.multinomial_logistic_loss)
