"""ConvolutionDepthwise (fork: MobileNet's Caffe, sp2823 / farmingyard; not in BVLC)."""

from __future__ import annotations

from dataclasses import replace

from . import register
from .base import Arity, Kernel, Shape, ShapeContext, Sharding
from .convolution import Convolution, ConvParams


class DepthwiseBase(Convolution):
    """A Convolution whose every output channel reads one input channel: group = channels.

    Subclasses say how a fork's fields map onto Convolution's (``depthwise``); shapes,
    blobs, MACs, placement and the kernel are then Convolution's for those fields, so the
    weight is (C, 1, kh, kw) and the bias (C), as in the forks.
    """

    # Not Convolution's V1 name (mypy took Convolution's tuple for the attribute's type).
    caffe_names = ()  # type: ignore[assignment]
    caffe_params = ("convolution_param",)
    bottoms = Arity.exact(1)
    tops = Arity.exact(1)

    def depthwise(self, p: ConvParams, bottom: Shape, ctx: ShapeContext) -> ConvParams:
        """The fork's checks; the params of the ordinary Convolution it computes."""
        raise NotImplementedError

    def _conv(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> ConvParams:
        return self.depthwise(p, bottoms[0], ShapeContext.detached(self.name))

    def shape(self, p: ConvParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        b = bottoms[0]
        if len(b) != 4:
            raise ctx.error(f"needs a 4-D (N, C, H, W) input, got {list(b)}")
        return super().shape(self.depthwise(p, b, ctx), bottoms, ctx)

    def param_shapes(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        return super().param_shapes(self._conv(p, bottoms), bottoms)

    def sharding(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> Sharding:
        return super().sharding(self._conv(p, bottoms), bottoms)

    def lower(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        return super().lower(self._conv(p, bottoms), bottoms, tops)


@register
class ConvolutionDepthwise(DepthwiseBase):
    """Depthwise convolution, one filter per channel (fork: MobileNet's Caffe; not in BVLC).

    The ``ConvolutionDepthwise`` of sp2823's BVLC pull request #5665 as
    farmingyard/caffe-mobilenet ships it (conv_dw_layer.cpp) and ShuffleNet's Caffe
    files use it: it reads ``convolution_param`` but makes as many output channels as
    input channels, whatever num_output and group say. netdsl computes the same, and
    refuses a num_output other than the channels (the fork would silently ignore it) or
    a group other than 1 or the channels. 2-D only; stride 1 and pad 0 by default.
    """

    fork = "MobileNet forks"

    name = "ConvolutionDepthwise"

    def depthwise(self, p: ConvParams, bottom: Shape, ctx: ShapeContext) -> ConvParams:
        c = bottom[1]
        if p.num_output != c:
            raise ctx.error(
                f"num_output {p.num_output} differs from the {c} input channels: the fork "
                "makes one output channel per input channel", "num_output",
                f"write num_output: {c}, or use a Convolution with group for a multiplier")
        if p.group not in (1, c):
            raise ctx.error(f"group {p.group} is neither 1 nor the {c} channels (the fork "
                            "ignores group and convolves each channel alone)", "group")
        return replace(p, group=c)
