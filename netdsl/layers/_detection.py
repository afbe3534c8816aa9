"""What the detection fork layers share: Caffe's legacy blob dims, the box coding enum and
the NMS parameter block (SSD's Caffe, weiliu89/caffe, branch ssd: caffe.proto).

Torch-free: the shape rules use it, and the layers hand its values to the kernels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..fields import CaffeEnum, doc
from .base import Shape, ShapeContext


class CodeType(CaffeEnum):
    """PriorBoxParameter.CodeType (weiliu89/caffe (ssd) caffe.proto): how a box is coded
    against its prior, numbered from 1 (``code_type: 2`` is CENTER_SIZE)."""

    CORNER = 1
    CENTER_SIZE = 2
    CORNER_SIZE = 3


@dataclass(frozen=True)
class NMSParams:
    """NonMaximumSuppressionParameter (``nms_param { ... }``)."""

    nms_threshold: float = field(default=0.3, metadata=doc("overlap above which a box is dropped"))
    top_k: int | None = field(
        default=None, metadata=doc("boxes per class kept before NMS (unset: all)")
    )
    eta: float = field(
        default=1.0, metadata=doc("adaptive NMS: threshold *= eta after each kept box")
    )


def legacy_dim(shape: Shape, index: int, ctx: ShapeContext) -> int:
    """Caffe's ``Blob::LegacyShape``: num/channels/height/width of a blob of at most 4
    axes, 1 for an axis it does not have (``height()`` of a 2-D blob is 1)."""
    if len(shape) > 4:
        raise ctx.error(
            f"needs blobs of at most 4 axes (Caffe reads them as num, channels, height, "
            f"width), got {list(shape)}"
        )
    if index >= len(shape) or index < -len(shape):
        return 1
    return shape[index]


def f32(x: float) -> float:
    """``x`` rounded to a C float, as Caffe stores proto floats and float locals."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


class ResizeMode(CaffeEnum):
    """ResizeParameter.Resize_mode (weiliu89/caffe (ssd) caffe.proto): numbered from 1."""

    WARP = 1
    FIT_SMALL_SIZE = 2
    FIT_LARGE_SIZE_AND_PAD = 3


class PadMode(CaffeEnum):
    """ResizeParameter.Pad_mode (weiliu89/caffe (ssd) caffe.proto): numbered from 1."""

    CONSTANT = 1
    MIRRORED = 2
    REPEAT_NEAREST = 3


class InterpMode(CaffeEnum):
    """ResizeParameter.Interp_mode (weiliu89/caffe (ssd) caffe.proto): numbered from 1
    (OpenCV's own flags count from 0)."""

    LINEAR = 1
    AREA = 2
    NEAREST = 3
    CUBIC = 4
    LANCZOS4 = 5


@dataclass(frozen=True)
class ResizeParams:
    """ResizeParameter (``resize_param { ... }``) of SSD's data transformer."""

    prob: float = field(default=1.0, metadata=doc("probability of using this resize"))
    resize_mode: ResizeMode = field(default=ResizeMode.WARP, metadata=doc("resize policy"))
    height: int = field(default=0, metadata=doc("output height"))
    width: int = field(default=0, metadata=doc("output width"))
    height_scale: int = field(default=0, metadata=doc("FIT_SMALL_SIZE: height for boxes"))
    width_scale: int = field(default=0, metadata=doc("FIT_SMALL_SIZE: width for boxes"))
    pad_mode: PadMode = field(default=PadMode.CONSTANT, metadata=doc("padding policy"))
    pad_value: tuple[float, ...] = field(default=(), metadata=doc("padding value(s)"))
    interp_mode: tuple[InterpMode, ...] = field(
        default=(), metadata=doc("interpolations to choose from (OpenCV's)")
    )
