"""ContrastiveLoss (BVLC caffe ``contrastive_loss_layer.cpp``), Hadsell et al. 2006."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext
from .softmax_with_loss import check_loss_bottoms


def legacy_dims(shape: Shape, ctx: ShapeContext, what: str) -> tuple[int, int, int, int]:
    """Caffe's ``num()``, ``channels()``, ``height()``, ``width()`` of a blob
    (``Blob::LegacyShape``): axes 0 to 3, 1 for an axis the blob lacks; a blob with
    more than 4 axes is an error."""
    if len(shape) > 4:
        raise ctx.error(
            f"the {what} {list(shape)} has {len(shape)} axes; this layer reads blobs as "
            "num x channels x height x width (4 axes at most)", "bottom",
        )
    d = tuple(shape[i] if i < len(shape) else 1 for i in range(4))
    return d[0], d[1], d[2], d[3]


@dataclass(frozen=True)
class ContrastiveLossParams:
    margin: float = field(default=1.0, metadata=doc("margin for dissimilar pairs"))
    legacy_version: bool = field(
        default=False, metadata=doc("use max(margin - d^2, 0), not max(margin - d, 0)^2")
    )


@register
class ContrastiveLoss(LayerType[ContrastiveLossParams]):
    """Similar pairs pulled together, dissimilar ones pushed apart (Caffe ContrastiveLossLayer).

    Bottoms: two N x C features and an N-vector of pair labels (non-zero: similar). The
    loss is ``sum(y d^2 + (1 - y) max(margin - d, 0)^2) / 2N``, ``d = ||a - b||``.
    """

    caffe_names = ("CONTRASTIVE_LOSS",)
    bottoms = Arity.exact(3)
    tops = Arity.exact(1)
    role = Role.LOSS
    Params = ContrastiveLossParams

    def shape(self, p: ContrastiveLossParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        check_loss_bottoms(bottoms, ctx)
        a, b, y = (legacy_dims(s, ctx, w) for s, w in zip(bottoms, ("first feature blob",
                   "second feature blob", "similarity label"), strict=True))
        if a[1] != b[1]:
            raise ctx.error(f"the features {list(bottoms[0])} and {list(bottoms[1])} must "
                            f"have the same channels ({a[1]} vs {b[1]})", "bottom")
        for dims, s in ((a, bottoms[0]), (b, bottoms[1])):
            if dims[2:] != (1, 1):
                raise ctx.error(f"a feature blob must be N x C (height and width 1), got "
                                f"{list(s)}", "bottom",
                                "flatten it first, or use InnerProduct to make the features")
        if y[1:] != (1, 1, 1):
            raise ctx.error(f"the similarity label must hold one value per pair, got "
                            f"{list(bottoms[2])}", "bottom")
        if y[0] < a[0]:  # Caffe reads label i for every pair i and would overrun
            raise ctx.error(f"the similarity label {list(bottoms[2])} has fewer values than "
                            f"the {a[0]} pairs", "bottom")
        return ((),)

    def lower(self, p: ContrastiveLossParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import losses

        return Call(losses.contrastive_loss,
                    {"margin": p.margin, "legacy_version": p.legacy_version})
