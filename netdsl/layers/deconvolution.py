"""Deconvolution (Caffe DeconvolutionLayer): the transpose of a convolution."""

from __future__ import annotations

from ..caffe_math import deconv_out_size
from . import register
from .base import Arity, Filler, Kernel, LayerType, Shape, ShapeContext, Split, count
from .convolution import ConvGeometry, ConvParams, conv_geometry


def _geometry(p: ConvParams, bottom: Shape, ctx: ShapeContext) -> ConvGeometry:
    if len(bottom) < 3:
        raise ctx.error(f"needs a blob with channels and spatial axes, got {list(bottom)}")
    return conv_geometry(p, ctx, len(bottom) - 2)


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
        if p.axis != 1:
            raise ctx.error("only axis 1 (NCHW) is supported", "axis")
        first = bottoms[0]
        for i, b in enumerate(bottoms[1:], start=1):
            if b != first:
                raise ctx.error(
                    f"all bottoms must have one shape; bottom 0 is {list(first)}, "
                    f"bottom {i} is {list(b)}", "bottom",
                )
        if len(ctx.tops) != len(bottoms):
            raise ctx.error(
                f"needs one top per bottom: {len(bottoms)} bottoms, {len(ctx.tops)} tops", "top"
            )
        if p.num_output < 1:
            raise ctx.error("num_output must be positive", "num_output")
        if p.group < 1:
            raise ctx.error("group must be positive", "group")
        g = _geometry(p, first, ctx)
        channels = first[1]
        if channels % p.group:
            raise ctx.error(
                f"{channels} input channels are not divisible by group {p.group}", "group"
            )
        if p.num_output % p.group:
            raise ctx.error(
                f"num_output {p.num_output} is not divisible by group {p.group}", "num_output"
            )
        out = []
        for i, size in enumerate(first[2:]):
            extent = g.dilation[i] * (g.kernel[i] - 1) + 1
            side = deconv_out_size(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
            if side < 1:
                raise ctx.error(
                    f"the output would have side {side} on spatial axis {i} (input {size}, "
                    f"stride {g.stride[i]}, pad {g.pad[i]}, kernel extent {extent})", "pad",
                    "use less padding",
                )
            out.append(side)
        return ((first[0], p.num_output, *out),) * len(ctx.tops)

    def param_shapes(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        b = bottoms[0]
        g = _geometry(p, b, ShapeContext.detached(self.name))
        shapes: dict[str, Shape] = {"weight": (b[1], p.num_output // p.group, *g.kernel)}
        if p.bias_term:
            shapes["bias"] = (p.num_output,)
        return shapes

    def macs(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        w = self.param_shapes(p, bottoms)["weight"]
        return sum(count(b) * count(w[1:]) for b in bottoms)  # each input scatters a kernel

    def fillers(self, p: ConvParams) -> dict[str, Filler]:
        return {"weight": p.weight_filler, "bias": p.bias_filler}

    def lower(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.convolution import Conv

        g = _geometry(p, bottoms[0], ShapeContext.detached(self.name))
        return Conv(self.param_shapes(p, bottoms), g.stride, g.pad, g.dilation, p.group,
                    transposed=True)
