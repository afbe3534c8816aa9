"""EuclideanLoss (Caffe EuclideanLossLayer): sum of squared differences / (2 N)."""

from __future__ import annotations

from . import register
from .base import Arity, Call, Kernel, LayerType, NoParams, Role, Shape, ShapeContext, count
from .softmax_with_loss import check_loss_bottoms


@register
class EuclideanLoss(LayerType[NoParams]):
    """1/(2N) * sum((a - b)^2) for two blobs of N examples (Caffe EuclideanLossLayer)."""

    caffe_names = ("EUCLIDEAN_LOSS",)
    bottoms = Arity.exact(2)
    tops = Arity.exact(1)
    role = Role.LOSS
    Params = NoParams

    def shape(
        self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        check_loss_bottoms(bottoms, ctx)
        a, b = bottoms
        if count(a[1:]) != count(b[1:]):
            raise ctx.error(
                f"the inputs {list(a)} and {list(b)} must have the same size per example "
                f"({count(a[1:])} vs {count(b[1:])})", "bottom",
            )
        return ((),)

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import losses

        return Call(losses.euclidean_loss)
