"""SmoothL1Loss (fork: Fast R-CNN's Caffe, rbgirshick/caffe-fast-rcnn
``src/caffe/layers/smooth_L1_loss_layer.cu``, ``include/caffe/fast_rcnn_layers.hpp``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext
from .contrastive_loss import legacy_dims
from .softmax_with_loss import check_loss_bottoms


@dataclass(frozen=True)
class SmoothL1LossParams:
    sigma: float = field(default=1.0, metadata=doc("quadratic where |x| < 1/sigma^2, else linear"))


@register
class SmoothL1Loss(LayerType[SmoothL1LossParams]):
    """Smooth L1 (Huber) loss of box regressions (fork: Fast R-CNN's Caffe).

    Bottoms: predictions, targets, and optionally inside and outside weights of the same
    shape (both or neither). Per element, with ``d = w_in (pred - target)``:
    ``0.5 (sigma d)^2`` where ``|d| < 1/sigma^2``, else ``|d| - 0.5/sigma^2``; times
    ``w_out``, summed, divided by N. Only the GPU kernel exists in the fork (its CPU
    path is NOT_IMPLEMENTED); netdsl follows it on every device.
    """

    fork = "Fast/Faster R-CNN (rbgirshick/caffe-fast-rcnn)"

    bottoms = Arity(2, 4)
    tops = Arity.exact(1)
    role = Role.LOSS
    caffe_params = ("smooth_l1_loss_param",)
    Params = SmoothL1LossParams

    def shape(self, p: SmoothL1LossParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if len(bottoms) == 3:
            raise ctx.error("if weights are used, must give both inside and outside "
                            "weights (4 bottoms), not 3", "bottom")
        check_loss_bottoms(bottoms, ctx)
        names = ("predictions", "targets", "inside weights", "outside weights")
        ref = legacy_dims(bottoms[0], ctx, names[0])
        for s, what in zip(bottoms[1:], names[1:], strict=False):
            dims = legacy_dims(s, ctx, what)
            if dims[1:] != ref[1:]:
                raise ctx.error(f"the {what} {list(s)} must match the predictions "
                                f"{list(bottoms[0])} in channels, height and width", "bottom")
            if dims[0] != ref[0]:  # Caffe reads count(predictions) values of each
                raise ctx.error(f"the {what} {list(s)} must have the predictions' "
                                f"first dimension {ref[0]}", "bottom")
        return ((),)

    def lower(self, p: SmoothL1LossParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import losses

        return Call(losses.smooth_l1_loss, {"sigma": p.sigma})
