"""DetectionOutput (fork: SSD's Caffe, weiliu89/caffe,
src/caffe/layers/detection_output_layer.cpp and src/caffe/util/bbox_util.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..caffe_math import FLT_MAX
from ..fields import doc
from . import register
from ._detection import CodeType, NMSParams, ResizeParams, legacy_dim
from .annotated_data import SSDTransform
from .base import Arity, Call, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class SaveOutputParams:
    """SaveOutputParameter: where Caffe writes result files. netdsl writes none."""

    output_directory: str = field(default="", metadata=doc("folder for the results"))
    output_name_prefix: str = field(default="", metadata=doc("file name prefix"))
    output_format: str = field(default="", metadata=doc("VOC, COCO or ILSVRC"))
    label_map_file: str = field(default="", metadata=doc("label names"))
    name_size_file: str = field(default="", metadata=doc("'name height width' per image"))
    num_test_image: int | None = field(default=None, metadata=doc("images to write"))
    resize_param: ResizeParams | None = field(default=None, metadata=doc("resize of the boxes"))


@dataclass(frozen=True)
class DetectionOutputParams:
    num_classes: int | None = field(default=None, metadata=doc("classes, background included"))
    share_location: bool = field(
        default=True, metadata=doc("one box per prior for all classes (false: per class)")
    )
    background_label_id: int = field(default=0, metadata=doc("background class (-1: none)"))
    nms_param: NMSParams | None = field(default=None, metadata=doc("per-class NMS"))
    save_output_param: SaveOutputParams | None = field(
        default=None, metadata=doc("Caffe's result files; netdsl ignores it")
    )
    code_type: CodeType = field(default=CodeType.CORNER, metadata=doc("how boxes are coded"))
    variance_encoded_in_target: bool = field(
        default=False, metadata=doc("the predictions already include the prior variances")
    )
    keep_top_k: int = field(
        default=-1, metadata=doc("detections kept per image after NMS (-1: all)")
    )
    confidence_threshold: float | None = field(
        default=None, metadata=doc("scores must exceed this (unset: all)")
    )
    visualize: bool = field(default=False, metadata=doc("Caffe draws the boxes; netdsl does not"))
    visualize_threshold: float | None = field(default=None, metadata=doc("for visualize"))
    save_file: str = field(default="", metadata=doc("video file for visualize"))
    transform: SSDTransform = field(default=SSDTransform(), metadata=doc("for visualize"))


def _nms(p: DetectionOutputParams) -> NMSParams:
    return p.nms_param or NMSParams()


def check_predictions(num_classes: int, share_location: bool, bottoms: tuple[Shape, ...],
                      ctx: ShapeContext) -> int:
    """The Reshape CHECKs of DetectionOutput and MultiBoxLoss: the loc and conf counts
    per image agree with the priors (bottom 2's height / 4). Returns the prior count."""
    loc, conf, prior = bottoms[0], bottoms[1], bottoms[2]
    if legacy_dim(loc, 0, ctx) != legacy_dim(conf, 0, ctx):
        raise ctx.error(f"the locations {list(loc)} and confidences {list(conf)} must have "
                        "the same first dimension (the batch)")
    priors = legacy_dim(prior, 2, ctx) // 4
    loc_classes = 1 if share_location else num_classes
    if priors * loc_classes * 4 != legacy_dim(loc, 1, ctx):
        raise ctx.error(
            f"the priors {list(prior)} give {priors} boxes, which need {loc_classes} x 4 "
            f"locations each: {priors * loc_classes * 4} channels, but the locations are "
            f"{list(loc)}", hint="Number of priors must match number of location predictions")
    if priors * num_classes != legacy_dim(conf, 1, ctx):
        raise ctx.error(
            f"{priors} priors and {num_classes} classes need {priors * num_classes} "
            f"confidence channels, but the confidences are {list(conf)}", "num_classes",
            "Number of priors must match number of confidence predictions")
    return priors


@register
class DetectionOutput(LayerType[DetectionOutputParams]):
    """SSD's detections: decoded boxes, per-class NMS (fork: SSD's Caffe, weiliu89/caffe).

    Bottoms: locations (N x priors*4), confidences (N x priors*classes, already
    softmax-ed), the PriorBox top; a fourth (the images) only for Caffe's visualize. The
    top is 1 x 1 x D x 7, one row per detection: [image, label, score, xmin, ymin, xmax,
    ymax], by image, then label, then score. D depends on the data: as in Caffe, shapes
    gives the placeholder of one row and the kernel returns all D rows (or one row of -1s
    per image, with its index, when nothing is found). ``save_output_param`` and
    ``visualize`` are accepted and ignored: netdsl writes no result files.
    """

    bottoms = Arity(3, 4)
    Params = DetectionOutputParams
    fork = "SSD (weiliu89/caffe)"

    def shape(
        self, p: DetectionOutputParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        if p.num_classes is None:
            raise ctx.error("needs num_classes", hint="e.g. num_classes: 21 (20 + background)")
        if p.num_classes < 1:
            raise ctx.error("num_classes must be at least 1", "num_classes")
        nms = _nms(p)
        if nms.nms_threshold < 0:
            raise ctx.error("nms_threshold must be non negative", "nms_param")
        if not 0 < nms.eta <= 1:
            raise ctx.error(f"eta must be in (0, 1], got {nms.eta:g}", "nms_param")
        check_predictions(p.num_classes, p.share_location, bottoms, ctx)
        return ((1, 1, 1, 7),)

    def lower(self, p: DetectionOutputParams, bottoms: tuple[Shape, ...],
              tops: tuple[Shape, ...]) -> Kernel:
        from ..kernels import detection

        assert p.num_classes is not None  # shape() checked it
        nms = _nms(p)
        ctx = ShapeContext.detached(self.name)
        return Call(detection.detection_output, {
            "num_priors": check_predictions(p.num_classes, p.share_location, bottoms, ctx),
            "num_classes": p.num_classes,
            "share_location": p.share_location,
            "background_label_id": p.background_label_id,
            "code_type": p.code_type.name,
            "variance_encoded_in_target": p.variance_encoded_in_target,
            "nms_threshold": nms.nms_threshold,
            "top_k": -1 if nms.top_k is None else nms.top_k,
            "eta": nms.eta,
            "keep_top_k": p.keep_top_k,
            "confidence_threshold": (-FLT_MAX if p.confidence_threshold is None
                                     else p.confidence_threshold),
        })
