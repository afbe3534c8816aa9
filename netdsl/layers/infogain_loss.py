"""InfogainLoss (BVLC caffe ``infogain_loss_layer.cpp``): a multinomial logistic loss
weighted by an infogain matrix H."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import (
    Arity,
    Call,
    Kernel,
    LayerType,
    Role,
    Shape,
    ShapeContext,
    canonical_axis,
    count,
)
from .softmax_with_loss import Normalization, check_label_count, check_loss_bottoms


@dataclass(frozen=True)
class InfogainLossParams:
    source: str = field(default="", metadata=doc("H as a BlobProto file (without a third bottom)"))
    axis: int = field(default=1, metadata=doc("the class axis of the predictions"))
    ignore_label: int | None = field(
        default=None, metadata=doc("label whose predictions add nothing to the loss")
    )
    normalization: Normalization = field(
        default=Normalization.VALID, metadata=doc("FULL, VALID, BATCH_SIZE or NONE")
    )
    normalize: bool | None = field(
        default=None, metadata=doc("deprecated; InfogainLoss rejects it: use normalization")
    )


def read_blob(path: str) -> tuple[Shape, list[float]]:
    """A ``.binaryproto`` BlobProto's shape and values, as Caffe's ``Blob::FromProto``
    reads them (the 4-D legacy fields when given, ``double_data`` when present).
    Raises ``OSError`` or ``ValueError`` with a message for the user."""
    from google.protobuf.message import DecodeError

    from ..caffe_pb import BlobProto

    with open(path, "rb") as f:
        data = f.read()
    blob = BlobProto()
    try:
        blob.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"not a Caffe BlobProto: {e}") from None
    legacy = ("num", "channels", "height", "width")
    if any(blob.HasField(k) for k in legacy):
        shape: Shape = tuple(int(getattr(blob, k)) for k in legacy)
    else:
        shape = tuple(int(d) for d in blob.shape.dim)
    values = [float(v) for v in (blob.double_data if len(blob.double_data) else blob.data)]
    if len(values) != count(shape):
        raise ValueError(f"its shape {list(shape)} needs {count(shape)} values, it holds "
                         f"{len(values)}")
    return shape, values


def _source_matrix(p: InfogainLossParams, ctx: ShapeContext) -> Shape:
    try:
        return read_blob(p.source)[0]
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        hint = None
        if not os.path.isabs(p.source):
            hint = (f"Caffe reads it relative to the working directory ({os.getcwd()}); "
                    "or give H as a third bottom")
        raise ctx.error(f"cannot read the infogain matrix '{p.source}': {why}", "source",
                        hint) from None


@register
class InfogainLoss(LayerType[InfogainLossParams]):
    """Softmax, then ``-sum_l H[label, l] log p_l`` per item (Caffe InfogainLossLayer).

    Bottoms: predictions, labels, and optionally the C x C matrix H (else read from
    ``source``, a BlobProto file, when the net is compiled). Tops: the loss, optionally
    the softmax probabilities. With H the identity it is SoftmaxWithLoss.
    """

    caffe_names = ("INFOGAIN_LOSS",)
    caffe_params = ("infogain_loss_param", "loss_param")
    bottoms = Arity(2, 3)
    tops = Arity(1, 2)
    role = Role.LOSS
    reads_class_scores = True
    Params = InfogainLossParams

    def shape(self, p: InfogainLossParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if p.normalize is not None:
            raise ctx.error("normalize is deprecated for InfogainLoss", "normalize",
                            "use normalization: VALID (true) or BATCH_SIZE (false)")
        if len(bottoms) < 3 and not p.source:
            raise ctx.error("needs the infogain matrix H: give infogain_loss_param "
                            "{ source } or a third bottom", "bottom")
        check_loss_bottoms(bottoms, ctx)
        data = bottoms[0]
        axis = canonical_axis(p.axis, len(data), ctx)
        check_label_count(axis, data, bottoms[1], ctx)
        labels = data[axis]
        if len(bottoms) == 3:
            h, where = bottoms[2], "bottom"
        else:
            h, where = _source_matrix(p, ctx), "source"
        if count(h) != labels * labels:
            raise ctx.error(f"the infogain matrix {list(h)} must hold {labels} x {labels} "
                            f"values for {labels} labels, it holds {count(h)}", where)
        return ((), data)[: len(ctx.tops)]

    def lower(self, p: InfogainLossParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import losses

        axis = p.axis % len(bottoms[0])
        kw = {"axis": axis, "ignore_label": p.ignore_label,
              "normalization": p.normalization.name}
        if len(bottoms) == 3:
            fn = losses.infogain_loss_and_prob if len(tops) == 2 else losses.infogain_loss
            return Call(fn, kw)
        _, values = read_blob(p.source)
        return losses.InfogainLoss(values, bottoms[0][axis], axis, p.ignore_label,
                                   p.normalization.name, with_prob=len(tops) == 2)
