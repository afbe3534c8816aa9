"""Accuracy (Caffe AccuracyLayer): fraction of labels among the top-k predictions."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext, canonical_axis, count
from .softmax_with_loss import check_label_count


@dataclass(frozen=True)
class AccuracyParams:
    top_k: int = field(default=1, metadata=doc("correct if the label is among the k best"))
    axis: int = field(default=1, metadata=doc("the class axis of the predictions"))
    ignore_label: int | None = field(
        default=None, metadata=doc("label whose predictions are not counted")
    )


@register
class Accuracy(LayerType[AccuracyParams]):
    """Top-k accuracy of predictions against labels (Caffe AccuracyLayer).

    Tops: the scalar accuracy, optionally the per-class accuracy (one value per class).
    """

    caffe_names = ("ACCURACY",)
    role = Role.METRIC
    reads_class_scores = True
    bottoms = Arity.exact(2)
    tops = Arity(1, 2)
    Params = AccuracyParams

    def shape(
        self, p: AccuracyParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        data, label = bottoms
        if p.top_k < 1:
            raise ctx.error(f"top_k must be positive, got {p.top_k}", "top_k")
        if count(label) == 0 or p.top_k > count(data) // count(label):
            raise ctx.error(
                f"top_k {p.top_k} is more than the {count(data) // max(1, count(label))} "
                "classes", "top_k",
            )
        axis = canonical_axis(p.axis, len(data), ctx)
        check_label_count(axis, data, label, ctx)
        return ((), (data[axis],))[: len(ctx.tops)]

    def lower(self, p: AccuracyParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import losses

        kw = {"top_k": p.top_k, "axis": p.axis % len(bottoms[0]), "ignore_label": p.ignore_label}
        return Call(losses.accuracy_and_per_class if len(tops) == 2 else losses.accuracy, kw)
