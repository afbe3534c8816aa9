"""SigmoidCrossEntropyLoss (BVLC caffe ``sigmoid_cross_entropy_loss_layer.cpp``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext, count
from .softmax_with_loss import Normalization, check_loss_bottoms


@dataclass(frozen=True)
class SigmoidCrossEntropyLossParams:
    ignore_label: int | None = field(
        default=None, metadata=doc("target value whose items add nothing to the loss")
    )
    normalization: Normalization | None = field(
        default=None,
        metadata=doc("FULL, VALID, BATCH_SIZE or NONE (unset: BATCH_SIZE, or as normalize says)"),
    )
    normalize: bool | None = field(
        default=None, metadata=doc("deprecated: when normalization is unset, true means VALID")
    )


def effective_normalization(p: SigmoidCrossEntropyLossParams) -> Normalization:
    """Caffe master's LayerSetUp: ``normalization`` if set; else ``normalize`` (true:
    VALID, false: BATCH_SIZE); else BATCH_SIZE, not LossParameter's VALID default, "for
    historical reasons" (caffe.proto)."""
    if p.normalization is not None:
        return p.normalization
    if p.normalize is not None:
        return Normalization.VALID if p.normalize else Normalization.BATCH_SIZE
    return Normalization.BATCH_SIZE


@register
class SigmoidCrossEntropyLoss(LayerType[SigmoidCrossEntropyLossParams]):
    """Cross-entropy of sigmoid(x) and targets in [0, 1] (Caffe SigmoidCrossEntropyLossLayer).

    Bottoms: scores and targets with as many values. Its numerically stable form is
    ``-(x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0])))``; the gradient
    ``sigmoid(x) - t``, over the normaliser.
    """

    caffe_names = ("SIGMOID_CROSS_ENTROPY_LOSS",)
    bottoms = Arity.exact(2)
    tops = Arity.exact(1)
    role = Role.LOSS
    Params = SigmoidCrossEntropyLossParams

    def shape(self, p: SigmoidCrossEntropyLossParams, bottoms: tuple[Shape, ...],
              ctx: ShapeContext) -> tuple[Shape, ...]:
        check_loss_bottoms(bottoms, ctx)
        x, t = bottoms
        if count(x) != count(t):
            raise ctx.error(
                f"the scores {list(x)} and targets {list(t)} must have the same count "
                f"({count(x)} vs {count(t)})", "bottom",
            )
        return ((),)

    def lower(self, p: SigmoidCrossEntropyLossParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import losses

        return Call(losses.sigmoid_cross_entropy_loss, {
            "ignore_label": p.ignore_label, "normalization": effective_normalization(p).name})
