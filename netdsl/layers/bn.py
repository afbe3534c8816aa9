"""BN (fork: SegNet's Caffe, alexgkendall/caffe-segnet; also ENet's, TimoSaemann/caffe-enet)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from . import register
from .base import Arity, Filler, Follow, Kernel, LayerType, Shape, ShapeContext
from .mvn import legacy_nchw


class BNMode(CaffeEnum):
    """BNParameter.BNMode (alexgkendall/caffe-segnet caffe.proto)."""

    LEARN = 0
    INFERENCE = 1


@dataclass(frozen=True)
class BNParams:
    bn_mode: BNMode = field(
        default=BNMode.LEARN,
        metadata=doc("LEARN: batch statistics (both phases); INFERENCE: scale and shift only"))
    scale_filler: Filler = field(
        default=Filler(), metadata=doc("scale initialiser (Caffe's default filler: constant 0)"))
    shift_filler: Filler = field(
        default=Filler(), metadata=doc("shift initialiser (Caffe's default filler: constant 0)"))


@register
class BN(LayerType[BNParams]):
    """Batch norm with its own scale and shift (fork: SegNet's Caffe, alexgkendall/caffe-segnet).

    ``src/caffe/layers/bn_layer.cpp`` and ``BNParameter`` of alexgkendall/caffe-segnet;
    TimoSaemann/caffe-enet (ENet's Caffe) has the same fields, defaults and C++, so one
    type reads both. Blobs: ``scale`` and ``shift``, each (1, C, 1, 1); there are no
    running statistics. ``bn_mode: LEARN`` normalises with the batch's mean and biased
    variance (eps 1e-9) in TRAIN and TEST alike, then scales and shifts, and may give
    the batch mean and variance as a second and third top; INFERENCE computes
    ``x * scale + shift`` only, with the statistics folded into the blobs beforehand
    (SegNet's compute_bn_statistics.py, ENet's BN-absorber.py). The top is 4-D.
    """

    tops = Arity(1, 3)
    blobs = ("scale", "shift")
    legacy_blob_axes = (4, 4)
    fresh_output = True
    follow = Follow.CHANNELS
    Params = BNParams
    fork = "SegNet and ENet (alexgkendall/caffe-segnet)"

    def shape(self, p: BNParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        top = legacy_nchw(bottoms[0], ctx)
        if p.bn_mode is BNMode.INFERENCE and len(ctx.tops) > 1:
            raise ctx.error(
                f"bn_mode: INFERENCE makes one top, got {len(ctx.tops)}", "top",
                "only LEARN gives the batch mean and variance as a second and third top")
        stats = (1, top[1], 1, 1)
        return (top, stats, stats)[: len(ctx.tops)]

    def param_shapes(self, p: BNParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        c = legacy_nchw(bottoms[0], ShapeContext.detached(self.name))[1]
        return {"scale": (1, c, 1, 1), "shift": (1, c, 1, 1)}

    def fillers(self, p: BNParams) -> dict[str, Filler]:
        return {"scale": p.scale_filler, "shift": p.shift_filler}

    def lower(self, p: BNParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.normalization import SegNetBN

        return SegNetBN(tops[0][1], p.bn_mode is BNMode.LEARN, len(tops) - 1)
