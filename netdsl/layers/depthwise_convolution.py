"""DepthwiseConvolution (fork: MobileNet's Caffe, yonghenglh6; not in BVLC)."""

from __future__ import annotations

from . import register
from .base import Shape, ShapeContext
from .convolution import ConvParams
from .convolution_depthwise import DepthwiseBase


@register
class DepthwiseConvolution(DepthwiseBase):
    """Depthwise convolution, group = channels (fork: MobileNet's Caffe; not in BVLC).

    yonghenglh6/DepthwiseConvolution's layer (depthwise_conv_layer.cpp/.cu), used by many
    MobileNet and MobileNet-SSD files: a BaseConvolutionLayer whose CPU path is Caffe's
    grouped convolution and whose GPU kernel assumes one filter per channel. netdsl
    therefore requires group and num_output to equal the input channels, where both paths
    agree; for anything else use Convolution with that group.
    """

    fork = "MobileNet forks"

    name = "DepthwiseConvolution"

    def depthwise(self, p: ConvParams, bottom: Shape, ctx: ShapeContext) -> ConvParams:
        c = bottom[1]
        for key, value in (("group", p.group), ("num_output", p.num_output)):
            if value != c:
                raise ctx.error(
                    f"{key} {value} differs from the {c} input channels: the fork's GPU "
                    "kernel convolves each channel alone", key,
                    f"write group: {c} and num_output: {c}, or use type Convolution")
        return p
