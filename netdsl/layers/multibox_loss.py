"""MultiBoxLoss (fork: SSD's Caffe, weiliu89/caffe,
src/caffe/layers/multibox_loss_layer.cpp and src/caffe/util/bbox_util.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import SpecError
from ..fields import CaffeEnum, doc
from . import register
from ._detection import CodeType, NMSParams
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext
from .detection_output import check_predictions
from .softmax_with_loss import Normalization


# MultiBoxLossParameter's enums (weiliu89/caffe (ssd) caffe.proto).
class LocLossType(CaffeEnum):
    L2 = 0
    SMOOTH_L1 = 1


class ConfLossType(CaffeEnum):
    SOFTMAX = 0
    LOGISTIC = 1


class MatchType(CaffeEnum):
    BIPARTITE = 0
    PER_PREDICTION = 1


class MiningType(CaffeEnum):
    NONE = 0
    MAX_NEGATIVE = 1
    HARD_EXAMPLE = 2


@dataclass(frozen=True)
class MultiBoxLossParams:
    loc_loss_type: LocLossType = field(
        default=LocLossType.SMOOTH_L1, metadata=doc("localisation loss"))
    conf_loss_type: ConfLossType = field(
        default=ConfLossType.SOFTMAX, metadata=doc("confidence loss"))
    loc_weight: float = field(default=1.0, metadata=doc("weight of the localisation loss"))
    num_classes: int | None = field(default=None, metadata=doc("classes, background included"))
    share_location: bool = field(
        default=True, metadata=doc("one box per prior for all classes (false: per class)"))
    match_type: MatchType = field(
        default=MatchType.PER_PREDICTION,
        metadata=doc("BIPARTITE alone, or also every prior over overlap_threshold"))
    overlap_threshold: float = field(
        default=0.5, metadata=doc("PER_PREDICTION: overlap that makes a prior positive"))
    use_prior_for_matching: bool = field(
        default=True, metadata=doc("match the priors (false: the decoded predictions)"))
    background_label_id: int = field(default=0, metadata=doc("background class"))
    use_difficult_gt: bool = field(default=True, metadata=doc("match difficult boxes too"))
    do_neg_mining: bool | None = field(
        default=None, metadata=doc("deprecated: must agree with mining_type"))
    neg_pos_ratio: float = field(
        default=3.0, metadata=doc("MAX_NEGATIVE: negatives per positive"))
    neg_overlap: float = field(
        default=0.5, metadata=doc("a negative overlaps every box less than this"))
    code_type: CodeType = field(default=CodeType.CORNER, metadata=doc("how boxes are coded"))
    encode_variance_in_target: bool = field(
        default=False, metadata=doc("divide targets by the variances, not the predictions"))
    map_object_to_agnostic: bool = field(
        default=False, metadata=doc("every object is class background + 1"))
    ignore_cross_boundary_bbox: bool = field(
        default=False, metadata=doc("priors crossing the image border never match"))
    bp_inside: bool = field(
        default=False, metadata=doc("no gradient for corners outside the image"))
    mining_type: MiningType = field(
        default=MiningType.MAX_NEGATIVE, metadata=doc("NONE, MAX_NEGATIVE or HARD_EXAMPLE"))
    nms_param: NMSParams | None = field(
        default=None, metadata=doc("NMS over the mined examples (netdsl: not supported)"))
    sample_size: int = field(default=64, metadata=doc("HARD_EXAMPLE: examples per image"))
    use_prior_for_nms: bool = field(
        default=False, metadata=doc("mining NMS on the priors (false: the predictions)"))
    normalization: Normalization | None = field(
        default=None, metadata=doc("loss_param: FULL, VALID (positives), BATCH_SIZE, NONE"))
    normalize: bool | None = field(
        default=None, metadata=doc("loss_param, deprecated: false means BATCH_SIZE"))


def normalization(p: MultiBoxLossParams) -> Normalization:
    """LayerSetUp's rule: loss_param's normalization, else the legacy normalize, else VALID."""
    if p.normalization is None and p.normalize is not None:
        return Normalization.VALID if p.normalize else Normalization.BATCH_SIZE
    return p.normalization or Normalization.VALID


def _mines(p: MultiBoxLossParams) -> bool:
    return p.mining_type is not MiningType.NONE


@register
class MultiBoxLoss(LayerType[MultiBoxLossParams]):
    """SSD's matching, mining, box and class loss (fork: SSD's Caffe, weiliu89/caffe).

    Bottoms: locations (N x priors*4), confidences (N x priors*classes, raw scores), the
    PriorBox top, and the ground truth (1 x 1 x B x 8, AnnotatedData's label). Each
    prior is matched to a box (the best prior of every box, then with PER_PREDICTION
    each prior whose overlap reaches overlap_threshold); MAX_NEGATIVE mining keeps the
    neg_pos_ratio x positives unmatched priors with the highest background loss. The
    loss is (loc_weight x loc loss + conf loss) / normaliser (VALID: the positives),
    gradients reach the locations and confidences (Caffe's default propagate_down).
    netdsl's kernel does not do HARD_EXAMPLE mining, NMS during mining (nms_param with
    nms_threshold > 0), or matching on per-class decoded predictions (share_location
    false with use_prior_for_matching false): lowering such a layer is an error.
    """

    caffe_params = ("multibox_loss_param", "loss_param")
    bottoms = Arity.exact(4)
    role = Role.LOSS
    Params = MultiBoxLossParams
    fork = "SSD (weiliu89/caffe)"

    def shape(
        self, p: MultiBoxLossParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        if p.num_classes is None:
            raise ctx.error("needs num_classes", hint="e.g. num_classes: 21 (20 + background)")
        if p.num_classes < 1:
            raise ctx.error("num_classes should not be less than 1", "num_classes")
        if p.background_label_id < 0:
            raise ctx.error("background_label_id is unsigned", "background_label_id")
        if p.do_neg_mining is not None and p.do_neg_mining != _mines(p):
            raise ctx.error(
                f"do_neg_mining: {str(p.do_neg_mining).lower()} contradicts mining_type: "
                f"{p.mining_type.name}", "do_neg_mining",
                "do_neg_mining is deprecated: use mining_type alone")
        if _mines(p) and not p.share_location:
            raise ctx.error("negative mining needs share_location: true", "share_location",
                            "or set mining_type: NONE")
        if p.conf_loss_type is ConfLossType.SOFTMAX and p.background_label_id >= p.num_classes:
            raise ctx.error(
                f"background_label_id {p.background_label_id} should be within [0, "
                f"{p.num_classes}) for SOFTMAX", "background_label_id")
        if p.map_object_to_agnostic and p.num_classes != 2:
            raise ctx.error("map_object_to_agnostic needs num_classes: 2 (background and "
                            "object)", "map_object_to_agnostic")
        check_predictions(p.num_classes, p.share_location, bottoms, ctx)
        return ((),)

    def lower(self, p: MultiBoxLossParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import multibox

        assert p.num_classes is not None  # shape() checked it
        refuse = _unsupported(p)
        if refuse:
            raise SpecError(f"MultiBoxLoss: netdsl cannot train with {refuse}",
                            hint="its shapes work; lowering it to torch does not (yet)")
        priors = check_predictions(p.num_classes, p.share_location, bottoms,
                                   ShapeContext.detached(self.name))
        return Call(multibox.multibox_loss, {
            "num_priors": priors,
            "num_classes": p.num_classes,
            "share_location": p.share_location,
            "background_label_id": p.background_label_id,
            "use_difficult_gt": p.use_difficult_gt,
            "match_type": p.match_type.name,
            "overlap_threshold": p.overlap_threshold,
            "use_prior_for_matching": p.use_prior_for_matching,
            "ignore_cross_boundary_bbox": p.ignore_cross_boundary_bbox,
            "code_type": p.code_type.name,
            "encode_variance_in_target": p.encode_variance_in_target,
            "bp_inside": p.bp_inside,
            "mining": _mines(p),
            "neg_pos_ratio": p.neg_pos_ratio,
            "neg_overlap": p.neg_overlap,
            "map_object_to_agnostic": p.map_object_to_agnostic,
            "loc_loss_type": p.loc_loss_type.name,
            "conf_loss_type": p.conf_loss_type.name,
            "loc_weight": p.loc_weight,
            "normalization": normalization(p).name,
        })


def _unsupported(p: MultiBoxLossParams) -> str | None:
    """What the kernel does not do, in words (None: it does all of ``p``)."""
    if p.mining_type is MiningType.HARD_EXAMPLE:
        return "mining_type: HARD_EXAMPLE (online hard example mining)"
    if _mines(p) and p.nms_param is not None and p.nms_param.nms_threshold > 0:
        return "nms_param during negative mining (nms_threshold > 0)"
    if not p.use_prior_for_matching and not p.share_location:
        return "use_prior_for_matching: false with share_location: false"
    return None
