"""Deconvolution (Caffe DeconvolutionLayer): the transpose of a convolution."""

from __future__ import annotations

from ..caffe_math import deconv_out_size
from . import register
from .base import Arity, Filler, Kernel, LayerType, Shape, ShapeContext, Split, count
from .convolution import ConvParams, conv_blob_shapes, conv_geometry, conv_setup, lenient_side


@register
class Deconvolution(LayerType[ConvParams]):
    """Learnable transposed convolution, e.g. for upsampling (Caffe DeconvolutionLayer).

    Output side: (in - 1) * stride - 2 * pad + dilation * (kernel - 1) + 1. The weight is
    [in channels, num_output / group, kh, kw], Caffe's (and torch's) transposed layout.
    """

    caffe_names = ("DECONVOLUTION",)
    caffe_params = ("convolution_param",)
    bottoms = Arity(1)
    tops = Arity(1)
    blobs = ("weight", "bias")
    legacy_blob_axes = (4, 1)
    split = Split.REPLICATE
    fresh_output = True
    Params = ConvParams

    def shape(
        self, p: ConvParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        first, g = conv_setup(p, bottoms, ctx)
        out = []
        for i, size in enumerate(first[2:]):
            extent = g.dilation[i] * (g.kernel[i] - 1) + 1
            side = deconv_out_size(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
            if side < 1:  # as Convolution's: Caffe goes on with 0, stops below it
                side = lenient_side(
                    ctx, side, f"the padding {g.pad[i]} leaves no output (input {size}, "
                    f"stride {g.stride[i]}, kernel extent {extent})", "pad",
                    "use less padding, or a larger input")
            out.append(side)
        return ((first[0], p.num_output, *out),) * len(ctx.tops)

    def param_shapes(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        b = bottoms[0]
        kernel = conv_geometry(p, b, ShapeContext.detached(self.name)).kernel
        return conv_blob_shapes(p, (b[1], p.num_output // p.group, *kernel))

    def macs(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        w = self.param_shapes(p, bottoms)["weight"]
        return sum(count(b) * count(w[1:]) for b in bottoms)  # each input scatters a kernel

    def fillers(self, p: ConvParams) -> dict[str, Filler]:
        return {"weight": p.weight_filler, "bias": p.bias_filler}

    def lower(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.convolution import Conv

        g = conv_geometry(p, bottoms[0], ShapeContext.detached(self.name))
        return Conv(self.param_shapes(p, bottoms), g.stride, g.pad, g.dilation, p.group,
                    transposed=True)
