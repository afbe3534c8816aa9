"""Convolution (Caffe ConvolutionLayer): grouped, dilated, strided, padded."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..caffe_math import conv_out_size
from ..fields import doc
from . import register
from .base import (
    Arity,
    Engine,
    Filler,
    Kernel,
    LayerType,
    Shape,
    ShapeContext,
    Sharding,
    Split,
    count,
    spatial_pair,
)


@dataclass(frozen=True)
class ConvParams:
    num_output: int = field(metadata=doc("number of output channels (filters)"))
    kernel_size: tuple[int, ...] = field(default=(), metadata=doc("kernel side, or one per axis"))
    kernel_h: int | None = field(default=None, metadata=doc("kernel height (2-D only)"))
    kernel_w: int | None = field(default=None, metadata=doc("kernel width (2-D only)"))
    stride: tuple[int, ...] = field(default=(), metadata=doc("step between windows (default 1)"))
    stride_h: int | None = field(default=None, metadata=doc("vertical stride"))
    stride_w: int | None = field(default=None, metadata=doc("horizontal stride"))
    pad: tuple[int, ...] = field(default=(), metadata=doc("zero padding on each side (default 0)"))
    pad_h: int | None = field(default=None, metadata=doc("vertical padding"))
    pad_w: int | None = field(default=None, metadata=doc("horizontal padding"))
    dilation: tuple[int, ...] = field(default=(), metadata=doc("kernel dilation (default 1)"))
    group: int = field(default=1, metadata=doc("each output group sees only its input group"))
    bias_term: bool = field(default=True, metadata=doc("learn a bias per output channel"))
    weight_filler: Filler = field(default=Filler(), metadata=doc("weight initialiser"))
    bias_filler: Filler = field(default=Filler(), metadata=doc("bias initialiser"))
    axis: int = field(default=1, metadata=doc("the channel axis"))
    force_nd_im2col: bool = field(default=False, metadata=doc("Caffe im2col switch; no effect"))
    engine: str = field(default="DEFAULT", metadata=doc("Caffe engine; no effect", numbers=Engine))


#: The hint of a window larger than its input: most often a placeholder input size.
PLACEHOLDER_HINT = ("if the input is a placeholder that the application resizes, give the "
                    "real size: --input NAME=C,H,W")


def c_div(a: int, b: int) -> int:
    """C++'s ``int / int``: the quotient truncated toward zero (Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def caffe_conv_side(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """``ConvolutionLayer::compute_output_shape`` (BVLC caffe src/caffe/layers/
    conv_layer.cpp) in C++'s int arithmetic: equal to ``caffe_math.conv_out_size`` for a
    window that fits, and truncating toward zero when it does not."""
    extent = dilation * (kernel - 1) + 1
    return c_div(size + 2 * pad - extent, stride) + 1


def lenient_side(ctx: ShapeContext, side: int, problem: str, field: str,
                 fix: str = "use a smaller kernel, more padding, or a larger input") -> int:
    """An output side from Caffe's formula where the window does not fit its input.

    Caffe checks no such thing: Reshape computes the side and ``Blob::Reshape`` accepts
    any side ``>= 0`` (BVLC caffe src/caffe/blob.cpp, ``CHECK_GE(shape[i], 0)``). So a
    net shipped with a 1x1 placeholder input that the application resizes (OpenPose)
    loads in Caffe, with a warning here. A side of 0 is an empty blob in Caffe; netdsl
    says so and goes on with 1, so that nothing after it divides by zero. A negative side
    stops Caffe at that CHECK, and is an error here too.
    """
    if side < 0:
        raise ctx.error(f"{problem}; Caffe's formula gives side {side}, and Caffe stops there "
                        "(a blob side must be >= 0)", field,
                        f"{fix} (--input NAME=C,H,W gives a placeholder input its real size)")
    if side == 0:
        ctx.warn(f"{problem}; Caffe's formula gives side 0, an empty blob in Caffe; netdsl "
                 "goes on with side 1", field, PLACEHOLDER_HINT)
        return 1
    ctx.warn(f"{problem}; Caffe computes side {side} with its formula and goes on", field,
             PLACEHOLDER_HINT)
    return side


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]


def conv_geometry(p: ConvParams, bottom: Shape, ctx: ShapeContext) -> ConvGeometry:
    """Kernel, stride, pad and dilation for each spatial axis of ``bottom`` (N, C, ...)."""
    n_spatial = len(bottom) - 2
    kernel = spatial_pair(ctx, p.kernel_size, p.kernel_h, p.kernel_w, "kernel", None, n_spatial)
    stride = spatial_pair(ctx, p.stride, p.stride_h, p.stride_w, "stride", 1, n_spatial)
    pad = spatial_pair(ctx, p.pad, p.pad_h, p.pad_w, "pad", 0, n_spatial)
    dilation = spatial_pair(ctx, p.dilation, None, None, "dilation", 1, n_spatial)
    for name, vals, low in (("kernel_size", kernel, 1), ("stride", stride, 1),
                            ("pad", pad, 0), ("dilation", dilation, 1)):
        if any(v < low for v in vals):
            raise ctx.error(f"{name} must be at least {low}, got {list(vals)}", name)
    return ConvGeometry(kernel, stride, pad, dilation)


#: The spatial axes a convolution may have: torch has conv1d/2d/3d (and transposed ones);
#: Caffe's N-D im2col goes further, but netdsl has no lowering past 3.
MAX_SPATIAL_AXES = 3


def conv_setup(p: ConvParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
               ) -> tuple[Shape, ConvGeometry]:
    """Caffe's BaseConvolutionLayer::LayerSetUp, shared by Convolution and Deconvolution:
    checks NCHW, one shape for every bottom and a top per bottom, at least one spatial
    axis, num_output and group positive, and group dividing both channel counts. Returns
    the bottoms' shape and the window geometry."""
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
    if len(first) < 3:
        raise ctx.error(
            f"its bottom has shape {list(first)}: needs channels and spatial axes "
            "(N, C, spatial...), at least 3 axes", "bottom",
            "Caffe's kernel_size needs a spatial axis to apply to; Reshape the blob first")
    if len(first) > 2 + MAX_SPATIAL_AXES:
        raise ctx.error(
            f"its bottom has shape {list(first)}, {len(first) - 2} spatial axes: netdsl "
            f"lowers 1 to {MAX_SPATIAL_AXES} (torch's conv1d, conv2d, conv3d)", "bottom")
    if p.num_output < 1:
        raise ctx.error("num_output must be positive", "num_output")
    if p.group < 1:
        raise ctx.error("group must be positive", "group")
    channels = first[1]
    if channels % p.group:
        raise ctx.error(
            f"{channels} input channels are not divisible by group {p.group}", "group",
            "each group must see the same number of input channels",
        )
    if p.num_output % p.group:
        raise ctx.error(
            f"num_output {p.num_output} is not divisible by group {p.group}", "num_output"
        )
    return first, conv_geometry(p, first, ctx)


def conv_blob_shapes(p: ConvParams, weight: Shape) -> dict[str, Shape]:
    """The learnable blobs of a (de)convolution: ``weight``, and a bias per output."""
    shapes: dict[str, Shape] = {"weight": weight}
    if p.bias_term:
        shapes["bias"] = (p.num_output,)
    return shapes


@register
class Convolution(LayerType[ConvParams]):
    """Learnable filters slid over the input (Caffe ConvolutionLayer)."""

    caffe_names = ("CONVOLUTION",)
    bottoms = Arity(1)
    tops = Arity(1)
    blobs = ("weight", "bias")
    legacy_blob_axes = (4, 1)
    split = Split.CHANNELS
    fresh_output = True
    Params = ConvParams

    def shape(
        self, p: ConvParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        first, g = conv_setup(p, bottoms, ctx)
        out = []
        for i, size in enumerate(first[2:]):
            extent = g.dilation[i] * (g.kernel[i] - 1) + 1
            if size + 2 * g.pad[i] < extent:
                side = caffe_conv_side(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
                out.append(lenient_side(
                    ctx, side, f"kernel {extent} is larger than the padded input "
                    f"{size + 2 * g.pad[i]} (input {size}, pad {g.pad[i]})", "kernel_size"))
                continue
            out.append(conv_out_size(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i]))
        top = (first[0], p.num_output, *out)
        return (top,) * len(ctx.tops)

    def param_shapes(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        b = bottoms[0]
        kernel = conv_geometry(p, b, ShapeContext.detached(self.name)).kernel
        return conv_blob_shapes(p, (p.num_output, b[1] // p.group, *kernel))

    def macs(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        w = self.param_shapes(p, bottoms)["weight"]
        per_output = count(w[1:])
        return sum(count(t) * per_output for t in tops)

    def fillers(self, p: ConvParams) -> dict[str, Filler]:
        return {"weight": p.weight_filler, "bias": p.bias_filler}

    def sharding(self, p: ConvParams, bottoms: tuple[Shape, ...]) -> Sharding:
        return Sharding(Split.CHANNELS, outputs=p.num_output, groups=p.group)

    def shard_params(self, p: ConvParams, outputs: tuple[int, int]) -> ConvParams:
        """A shard of whole groups keeps its share of the groups; with one group every
        shard convolves all input channels."""
        n = outputs[1] - outputs[0]
        return replace(p, num_output=n, group=p.group * n // p.num_output if p.group > 1 else 1)

    def lower(self, p: ConvParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.convolution import Conv

        g = conv_geometry(p, bottoms[0], ShapeContext.detached(self.name))
        return Conv(self.param_shapes(p, bottoms), g.stride, g.pad, g.dilation, p.group)
