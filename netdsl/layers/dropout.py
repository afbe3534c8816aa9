"""Dropout (Caffe DropoutLayer): zero a random fraction of inputs while training."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Follow, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class DropoutParams:
    dropout_ratio: float = field(default=0.5, metadata=doc("probability of zeroing an input"))
    scale_train: bool = field(
        default=True,
        metadata=doc("scale kept inputs by 1/(1-ratio) at train (else scale by 1-ratio at test)"),
    )
    sample_weights_test: bool = field(default=False, metadata=doc(
        "SegNet fork: sample the dropout mask in TEST too (Monte Carlo dropout)"))


@register
class Dropout(LayerType[DropoutParams]):
    """Randomly zeroes inputs in training, identity in testing (Caffe DropoutLayer)."""

    caffe_names = ("DROPOUT",)
    follow = Follow.ELEMENTWISE
    Params = DropoutParams

    def shape(
        self, p: DropoutParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        # Caffe only DCHECKs 0 < ratio < 1 (debug builds); a ratio of 1 divides by zero.
        if not 0.0 <= p.dropout_ratio < 1.0:
            raise ctx.error(
                f"dropout_ratio must be in [0, 1), got {p.dropout_ratio}", "dropout_ratio"
            )
        return (bottoms[0],)

    def lower(self, p: DropoutParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import elementwise

        return elementwise.Dropout(p.dropout_ratio, p.scale_train, p.sample_weights_test)
