"""SoftmaxWithLoss (Caffe SoftmaxWithLossLayer): multinomial logistic loss of a softmax."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from . import register
from .base import (
    Arity,
    Call,
    Engine,
    Kernel,
    LayerType,
    Role,
    Shape,
    ShapeContext,
    canonical_axis,
    count,
)


class Normalization(CaffeEnum):
    """Caffe's LossParameter.NormalizationMode (BVLC caffe.proto): what the summed loss
    is divided by."""

    FULL = 0  # every prediction, ignored ones included
    VALID = 1  # predictions whose label is not ignore_label
    BATCH_SIZE = 2  # the outer count (N for axis 1)
    NONE = 3  # not normalised


@dataclass(frozen=True)
class SoftmaxWithLossParams:
    axis: int = field(default=1, metadata=doc("the class axis of the predictions"))
    ignore_label: int | None = field(
        default=None, metadata=doc("label whose predictions add nothing to the loss")
    )
    normalization: Normalization | None = field(
        default=None,
        metadata=doc("FULL, VALID, BATCH_SIZE or NONE (unset: VALID, or as normalize says)"),
    )
    normalize: bool | None = field(
        default=None,
        metadata=doc("deprecated: when normalization is unset, false means BATCH_SIZE"),
    )
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect",
                                                        numbers=Engine))
    weight_by_label_freqs: bool = field(default=False, metadata=doc(
        "SegNet fork: weight each position's loss by its label's class_weighting",
        block="loss_param"))
    class_weighting: tuple[float, ...] = field(default=(), metadata=doc(
        "SegNet fork: one weight per class (with weight_by_label_freqs)", block="loss_param"))


def effective_normalization(p: SoftmaxWithLossParams) -> Normalization:
    """Caffe's LossLayer rule: `normalization` wins; else legacy `normalize`; else VALID."""
    if p.normalization is not None:
        return p.normalization
    if p.normalize is not None:
        return Normalization.VALID if p.normalize else Normalization.BATCH_SIZE
    return Normalization.VALID


def check_loss_bottoms(bottoms: tuple[Shape, ...], ctx: ShapeContext) -> None:
    """Caffe's LossLayer::Reshape check: data and label agree on the first dimension."""
    data, label = bottoms[0], bottoms[1]
    if not data or not label or data[0] != label[0]:
        raise ctx.error(
            f"the data {list(data)} and label {list(label)} must have the same first dimension",
            "bottom",
        )


def check_label_count(axis: int, data: Shape, label: Shape, ctx: ShapeContext) -> None:
    """One label per prediction: count(label) == count(data) / data[axis]."""
    outer, inner = count(data[:axis]), count(data[axis + 1:])
    if outer * inner != count(label):
        dims = [d for i, d in enumerate(data) if i != axis]
        raise ctx.error(
            f"the label {list(label)} has {count(label)} values, but the predictions "
            f"{list(data)} need one per position outside axis {axis}: {outer * inner}",
            "axis" if "axis" in ctx.field_spans else "bottom",
            f"with axis {axis} the label should have shape {dims}, values in "
            f"0..{data[axis] - 1}",
        )


def check_class_weighting(p: SoftmaxWithLossParams, data: Shape, axis: int,
                          ctx: ShapeContext) -> None:
    """The SegNet fork's CHECK (LayerSetUp and Reshape): with weight_by_label_freqs,
    one class_weighting value per class. The fork compares with ``channels()`` (the
    legacy axis 1); its kernels index the weights by label, so the class axis must
    agree too (the same check for SegNet's axis 1)."""
    if not p.weight_by_label_freqs:
        if p.class_weighting:
            ctx.warn("class_weighting has no effect without weight_by_label_freqs: true",
                     "class_weighting")
        return
    n = len(p.class_weighting)
    channels = data[1] if len(data) > 1 else 1
    for classes in dict.fromkeys((channels, data[axis])):
        if n != classes:
            raise ctx.error(
                f"weight_by_label_freqs needs one class_weighting value per class: "
                f"{classes} classes, {n} values",
                "class_weighting" if "class_weighting" in ctx.field_spans
                else "weight_by_label_freqs",
                "Number of class weight values does not match the number of classes "
                "(SegNet's softmax_loss_layer.cpp)")


@register
class SoftmaxWithLoss(LayerType[SoftmaxWithLossParams]):
    """Softmax then the negative log likelihood of the labels (Caffe SoftmaxWithLossLayer).

    Bottoms: predictions and integer labels. Tops: the scalar loss, optionally the
    softmax probabilities.

    SegNet's fork (alexgkendall/caffe-segnet, src/caffe/layers/softmax_loss_layer.cpp
    and caffe.proto's LossParameter) adds ``weight_by_label_freqs`` with
    ``class_weighting``: each position's loss and gradient are multiplied by its label's
    weight, then normalised as usual (the count of valid positions, not of weights).
    """

    caffe_names = ("SOFTMAX_LOSS",)
    caffe_params = ("softmax_param", "loss_param")
    bottoms = Arity.exact(2)
    tops = Arity(1, 2)
    role = Role.LOSS
    reads_class_scores = True
    Params = SoftmaxWithLossParams

    def shape(
        self, p: SoftmaxWithLossParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        check_loss_bottoms(bottoms, ctx)
        axis = canonical_axis(p.axis, len(bottoms[0]), ctx)
        check_label_count(axis, bottoms[0], bottoms[1], ctx)
        check_class_weighting(p, bottoms[0], axis, ctx)
        return ((), bottoms[0])[: len(ctx.tops)]

    def lower(self, p: SoftmaxWithLossParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import losses

        kw: dict[str, object] = {"axis": p.axis % len(bottoms[0]),
                                 "ignore_label": p.ignore_label,
                                 "normalization": effective_normalization(p).name}
        if p.weight_by_label_freqs:
            kw["class_weighting"] = tuple(float(w) for w in p.class_weighting)
        if len(tops) == 2:
            return Call(losses.softmax_with_loss_and_prob, kw)
        return Call(losses.softmax_with_loss, kw)
