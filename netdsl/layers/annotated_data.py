"""AnnotatedData (fork: SSD's Caffe, weiliu89/caffe, src/caffe/layers/annotated_data_layer.cpp
and DataTransformer::InferBlobShape in src/caffe/data_transformer.cpp)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from . import register
from ._detection import ResizeMode, ResizeParams
from .base import Arity, Shape, ShapeContext
from .data import DB, DataLayer


class EmitType(CaffeEnum):
    """EmitConstraint.EmitType (weiliu89/caffe (ssd) caffe.proto)."""

    CENTER = 0
    MIN_OVERLAP = 1


@dataclass(frozen=True)
class EmitConstraint:
    """EmitConstraint: which boxes survive a crop."""

    emit_type: EmitType = field(default=EmitType.CENTER, metadata=doc("keep a box by..."))
    emit_overlap: float | None = field(default=None, metadata=doc("MIN_OVERLAP's overlap"))


@dataclass(frozen=True)
class SaltPepperParams:
    fraction: float = field(default=0.0, metadata=doc("fraction of pixels"))
    value: tuple[float, ...] = field(default=(), metadata=doc("noise value(s)"))


@dataclass(frozen=True)
class NoiseParams:
    """NoiseParameter (``noise_param``)."""

    prob: float = field(default=0.0, metadata=doc("probability of adding noise"))
    hist_eq: bool = field(default=False, metadata=doc("histogram equalisation"))
    inverse: bool = field(default=False, metadata=doc("colour inversion"))
    decolorize: bool = field(default=False, metadata=doc("grey scale"))
    gauss_blur: bool = field(default=False, metadata=doc("Gaussian blur"))
    jpeg: float = field(default=-1.0, metadata=doc("JPEG quality (-1: none)"))
    posterize: bool = field(default=False, metadata=doc("posterisation"))
    erode: bool = field(default=False, metadata=doc("erosion"))
    saltpepper: bool = field(default=False, metadata=doc("salt-and-pepper noise"))
    saltpepper_param: SaltPepperParams | None = field(
        default=None, metadata=doc("its fraction and values"))
    clahe: bool = field(default=False, metadata=doc("local histogram equalisation"))
    convert_to_hsv: bool = field(default=False, metadata=doc("to HSV"))
    convert_to_lab: bool = field(default=False, metadata=doc("to Lab"))


@dataclass(frozen=True)
class DistortParams:
    """DistortionParameter (``distort_param``): photometric distortions."""

    brightness_prob: float = field(default=0.0, metadata=doc("probability"))
    brightness_delta: float = field(default=0.0, metadata=doc("added in [-delta, delta]"))
    contrast_prob: float = field(default=0.0, metadata=doc("probability"))
    contrast_lower: float = field(default=0.0, metadata=doc("lowest factor"))
    contrast_upper: float = field(default=0.0, metadata=doc("highest factor"))
    hue_prob: float = field(default=0.0, metadata=doc("probability"))
    hue_delta: float = field(default=0.0, metadata=doc("added to hue in [-delta, delta]"))
    saturation_prob: float = field(default=0.0, metadata=doc("probability"))
    saturation_lower: float = field(default=0.0, metadata=doc("lowest factor"))
    saturation_upper: float = field(default=0.0, metadata=doc("highest factor"))
    random_order_prob: float = field(default=0.0, metadata=doc("shuffle the channels"))


@dataclass(frozen=True)
class ExpandParams:
    """ExpansionParameter (``expand_param``): zoom out onto a larger canvas."""

    prob: float = field(default=1.0, metadata=doc("probability"))
    max_expand_ratio: float = field(default=1.0, metadata=doc("largest canvas / image"))


@dataclass(frozen=True)
class SSDTransform:
    """SSD's TransformationParameter (``transform_param``): BVLC's and its own policies."""

    scale: float = field(default=1.0, metadata=doc("multiply pixels by this after the mean"))
    mirror: bool = field(default=False, metadata=doc("random horizontal flips"))
    crop_size: int = field(default=0, metadata=doc("crop side"))
    crop_h: int = field(default=0, metadata=doc("crop height"))
    crop_w: int = field(default=0, metadata=doc("crop width"))
    mean_file: str = field(default="", metadata=doc("mean image (binaryproto)"))
    mean_value: tuple[float, ...] = field(default=(), metadata=doc("per-channel mean"))
    force_color: bool = field(default=False, metadata=doc("decode as 3 channels"))
    force_gray: bool = field(default=False, metadata=doc("decode as 1 channel"))
    resize_param: ResizeParams | None = field(default=None, metadata=doc("resize policy"))
    noise_param: NoiseParams | None = field(default=None, metadata=doc("noise policy"))
    distort_param: DistortParams | None = field(default=None, metadata=doc("distortions"))
    expand_param: ExpandParams | None = field(default=None, metadata=doc("expansion"))
    emit_constraint: EmitConstraint | None = field(
        default=None, metadata=doc("which boxes a crop keeps"))


@dataclass(frozen=True)
class Sampler:
    min_scale: float = field(default=1.0, metadata=doc("smallest sample / image side"))
    max_scale: float = field(default=1.0, metadata=doc("largest sample / image side"))
    min_aspect_ratio: float = field(default=1.0, metadata=doc("smallest aspect ratio"))
    max_aspect_ratio: float = field(default=1.0, metadata=doc("largest aspect ratio"))


@dataclass(frozen=True)
class SampleConstraint:
    min_jaccard_overlap: float | None = field(default=None, metadata=doc("with some box"))
    max_jaccard_overlap: float | None = field(default=None, metadata=doc("with some box"))
    min_sample_coverage: float | None = field(default=None, metadata=doc("of the sample"))
    max_sample_coverage: float | None = field(default=None, metadata=doc("of the sample"))
    min_object_coverage: float | None = field(default=None, metadata=doc("of a box"))
    max_object_coverage: float | None = field(default=None, metadata=doc("of a box"))


@dataclass(frozen=True)
class BatchSampler:
    """BatchSampler: SSD's random crops."""

    use_original_image: bool = field(default=True, metadata=doc("sample from the image"))
    sampler: Sampler | None = field(default=None, metadata=doc("sample sizes"))
    sample_constraint: SampleConstraint | None = field(
        default=None, metadata=doc("when a sample counts"))
    max_sample: int | None = field(default=None, metadata=doc("samples to find"))
    max_trials: int = field(default=100, metadata=doc("attempts"))


class AnnoType(CaffeEnum):
    """AnnotatedDatum.AnnotationType (weiliu89/caffe (ssd) caffe.proto)."""

    BBOX = 0


def _data(text: str, **extra: object) -> dict[str, object]:
    """Metadata of a field Caffe reads from ``data_param``, not ``annotated_data_param``."""
    return doc(text, block="data_param", **extra)


@dataclass(frozen=True)
class AnnotatedDataParams:
    batch_sampler: tuple[BatchSampler, ...] = field(
        default=(), metadata=doc("random crop policies"))
    label_map_file: str = field(default="", metadata=doc("label names (LabelMap text)"))
    anno_type: AnnoType | None = field(
        default=None, metadata=doc("overrides the annotation type in the database"))
    source: str = field(default="", metadata=_data("annotated LMDB path"))
    batch_size: int = field(default=0, metadata=_data("examples per batch"))
    backend: str = field(default="LEVELDB", metadata=_data("LMDB or LEVELDB", numbers=DB))
    rand_skip: int = field(default=0, metadata=_data("skip up to this many examples"))
    prefetch: int = field(default=4, metadata=_data("batches to prefetch"))
    scale: float = field(default=1.0, metadata=_data("deprecated: use transform"))
    mean_file: str = field(default="", metadata=_data("deprecated: use transform"))
    crop_size: int = field(default=0, metadata=_data("deprecated: use transform"))
    mirror: bool = field(default=False, metadata=_data("deprecated: use transform"))
    force_encoded_color: bool = field(default=False, metadata=_data("decode as 3 channels"))
    transform: SSDTransform = field(default=SSDTransform(), metadata=doc("preprocessing"))


def _image_hw(p: AnnotatedDataParams, ctx: ShapeContext) -> tuple[int, int] | None:
    """InferBlobShape's height and width where the params decide them: a WARP or
    FIT_LARGE_SIZE_AND_PAD resize, then the crop. None where they depend on the images."""
    t = p.transform
    crop_h, crop_w = (t.crop_size, t.crop_size) if t.crop_size else (t.crop_h, t.crop_w)
    h = w = 0
    r = t.resize_param
    if r is not None:
        if r.resize_mode is ResizeMode.FIT_SMALL_SIZE:
            if p.batch_size != 1:
                raise ctx.error("resize_mode FIT_SMALL_SIZE needs batch_size 1",
                                "batch_size", "Only support batch size of 1 for FIT_SMALL_SIZE")
        else:
            h, w = r.height, r.width
            if h <= 0 or w <= 0:
                raise ctx.error(f"resize_param needs a height and a width, got {h} x {w}",
                                "transform")
            if h < crop_h or w < crop_w:
                raise ctx.error(f"the crop {crop_h} x {crop_w} is larger than the resized "
                                f"image {h} x {w}", "transform")
    out_h, out_w = crop_h or h, crop_w or w
    return (out_h, out_w) if out_h and out_w else None


@register
class AnnotatedData(DataLayer[AnnotatedDataParams]):
    """Images and their boxes from an annotated LMDB (fork: SSD's Caffe, weiliu89/caffe).

    Tops: the images (batch x C x H x W) and the boxes, 1 x 1 x B x 8, one row per box:
    [image in batch, label, instance, xmin, ymin, xmax, ymax, difficult]. B depends on
    the batch, so the label's shape is Caffe's placeholder of one box. H x W come from
    ``transform_param``'s resize (WARP, FIT_LARGE_SIZE_AND_PAD) and crop, C is 3 (1 with
    force_gray); anything else from ``--input``. netdsl cannot read annotated LMDBs:
    ``train`` with this layer says so (give the net an Input layer and feed it instead).
    """

    caffe_params = ("annotated_data_param", "data_param")
    tops = Arity(1, 2)
    Params = AnnotatedDataParams
    fork = "SSD (weiliu89/caffe)"

    def shape(
        self, p: AnnotatedDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        t = p.transform
        if t.force_color and t.force_gray:
            raise ctx.error("cannot set both force_color and force_gray", "transform")
        top = ctx.tops[0]
        given = ctx.inputs.get(top)
        hw = _image_hw(p, ctx)
        if given is not None:
            data: Shape = (ctx.batch, *given)
        elif hw is not None:
            data = (ctx.batch, 1 if t.force_gray else 3, *hw)
        else:
            raise ctx.error(
                f"the size of '{top}' depends on the images in the database, which shapes "
                "does not read (no WARP resize_param or crop in transform_param)",
                hint=f"give it: --input {top}=3,300,300")
        # The label: Caffe's "at least one box" placeholder; the real count varies.
        return (data, (1, 1, 1, 8))[: len(ctx.tops)]
