"""DetectionEvaluate (fork: SSD's Caffe, weiliu89/caffe,
src/caffe/layers/detection_evaluate_layer.cpp and src/caffe/util/bbox_util.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diagnostics import SpecError
from ..fields import doc
from . import register
from ._detection import ResizeParams, legacy_dim
from .base import Arity, Call, Kernel, LayerType, Role, Shape, ShapeContext


@dataclass(frozen=True)
class DetectionEvaluateParams:
    num_classes: int | None = field(default=None, metadata=doc("classes, background included"))
    background_label_id: int = field(default=0, metadata=doc("background class"))
    overlap_threshold: float = field(
        default=0.5, metadata=doc("overlap that makes a detection a true positive"))
    evaluate_difficult_gt: bool = field(
        default=True, metadata=doc("count difficult boxes (false: ignore them)"))
    name_size_file: str = field(
        default="", metadata=doc("'name height width' per image, to evaluate in pixels"))
    resize_param: ResizeParams | None = field(
        default=None, metadata=doc("with name_size_file: how the images were resized"))


def _positive_classes(p: DetectionEvaluateParams) -> int:
    assert p.num_classes is not None
    return p.num_classes if p.background_label_id == -1 else p.num_classes - 1


@register
class DetectionEvaluate(LayerType[DetectionEvaluateParams]):
    """True and false positives of detections, for mAP (fork: SSD's Caffe, weiliu89/caffe).

    Bottoms: DetectionOutput's top (1 x 1 x D x 7) and the ground truth (1 x 1 x B x 8).
    Top: 1 x 1 x (classes + D') x 5: a row [-1, class, boxes of the class, -1, -1] per
    class but the background, then [image, label, score, true positive, false positive]
    for each of the D' real detections, by image, label and score. The solver turns
    these into average precision. A detection matched to a difficult box that is not
    evaluated is neither (0, 0). The count depends on the data; shapes gives Caffe's
    count at set-up (every row of the bottom a detection).
    """

    bottoms = Arity.exact(2)
    role = Role.METRIC
    Params = DetectionEvaluateParams
    fork = "SSD (weiliu89/caffe)"

    def shape(self, p: DetectionEvaluateParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if p.num_classes is None:
            raise ctx.error("needs num_classes", hint="e.g. num_classes: 21 (20 + background)")
        if p.num_classes < 1:
            raise ctx.error("num_classes must be at least 1", "num_classes")
        if p.overlap_threshold <= 0:
            raise ctx.error("overlap_threshold must be positive", "overlap_threshold")
        for b, width, what in ((bottoms[0], 7, "detections"), (bottoms[1], 8, "ground truth")):
            dims = [legacy_dim(b, i, ctx) for i in range(4)]
            if dims[0] != 1 or dims[1] != 1 or dims[3] != width:
                raise ctx.error(f"the {what} must be 1 x 1 x rows x {width}, got {list(b)}")
        return ((1, 1, _positive_classes(p) + legacy_dim(bottoms[0], 2, ctx), 5),)

    def lower(self, p: DetectionEvaluateParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import detection

        if p.name_size_file:
            raise SpecError(
                "DetectionEvaluate: netdsl evaluates in normalised coordinates only; it does "
                "not read name_size_file", hint="remove name_size_file (and resize_param)")
        assert p.num_classes is not None  # shape() checked it
        return Call(detection.detection_evaluate, {
            "num_classes": p.num_classes,
            "background_label_id": p.background_label_id,
            "overlap_threshold": p.overlap_threshold,
            "evaluate_difficult_gt": p.evaluate_difficult_gt,
        })
