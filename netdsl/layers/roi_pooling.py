"""ROIPooling (fork: Fast/Faster R-CNN's Caffe, rbgirshick/caffe-fast-rcnn,
src/caffe/layers/roi_pooling_layer.cpp and roi_pooling_layer.cu)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from ._detection import f32, legacy_dim
from .base import Arity, Call, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class ROIPoolingParams:
    pooled_h: int = field(default=0, metadata=doc("output height (required)"))
    pooled_w: int = field(default=0, metadata=doc("output width (required)"))
    spatial_scale: float = field(
        default=1.0, metadata=doc("image to feature map scale of the ROI coordinates (1/16)")
    )


@register
class ROIPooling(LayerType[ROIPoolingParams]):
    """Max pooling of regions to a grid (fork: Fast R-CNN's Caffe, rbgirshick/caffe-fast-rcnn).

    Bottoms: the feature map (N x C x H x W) and the ROIs, R x 5 rows [image in batch,
    x1, y1, x2, y2] in image pixels. Top: R x C x pooled_h x pooled_w. As Caffe does,
    corners are rounded (half away from zero) after scaling, an ROI is at least 1 x 1,
    bin p spans floor(p * size / pooled) to ceil((p + 1) * size / pooled), an empty bin
    is 0, and the gradient goes to each bin's first maximum (none for an ROI whose
    corners are reversed, as in Caffe's GPU backward).
    """

    fork = "Fast/Faster R-CNN (rbgirshick/caffe-fast-rcnn)"

    caffe_params = ("roi_pooling_param",)
    bottoms = Arity.exact(2)
    Params = ROIPoolingParams

    def shape(
        self, p: ROIPoolingParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        if p.pooled_h <= 0:
            raise ctx.error("pooled_h must be > 0", "pooled_h", "e.g. pooled_h: 7")
        if p.pooled_w <= 0:
            raise ctx.error("pooled_w must be > 0", "pooled_w", "e.g. pooled_w: 7")
        data, rois = bottoms
        channels = legacy_dim(data, 1, ctx)
        return ((legacy_dim(rois, 0, ctx), channels, p.pooled_h, p.pooled_w),)

    def lower(self, p: ROIPoolingParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import detection

        ctx = ShapeContext.detached(self.name)
        chw = tuple(legacy_dim(bottoms[0], i, ctx) for i in (1, 2, 3))
        return Call(detection.roi_pool, {"chw": chw, "pooled_h": p.pooled_h,
                                         "pooled_w": p.pooled_w,
                                         "spatial_scale": f32(p.spatial_scale)})
