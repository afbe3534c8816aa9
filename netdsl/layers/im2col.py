"""Im2col (Caffe Im2colLayer): every convolution window laid out along the channels."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Call, Kernel, LayerType, Shape, ShapeContext, canonical_axis
from .convolution import (
    ConvGeometry,
    ConvParams,
    caffe_conv_side,
    conv_geometry,
    lenient_side,
)


@dataclass(frozen=True)
class Im2colParams(ConvParams):
    num_output: int = field(default=0, metadata=doc("ignored by Im2col"))


def im2col_geometry(p: Im2colParams, bottom: Shape, ctx: ShapeContext
                    ) -> tuple[int, ConvGeometry]:
    """Caffe's Im2colLayer::LayerSetUp: the channel axis and the window geometry of the
    axes after it (kernel required; stride 1, pad 0, dilation 1 by default)."""
    axis = canonical_axis(p.axis, len(bottom), ctx)
    if len(bottom) - axis - 1 < 1:
        raise ctx.error(f"needs a spatial axis after the channel axis {axis}, got "
                        f"{list(bottom)}")
    # conv_geometry reads the spatial axes as those after (N, C): hand it just those.
    return axis, conv_geometry(p, (1, *bottom[axis:]), ctx)


@register
class Im2col(LayerType[Im2colParams]):
    """Lays each convolution window out along the channel axis (Caffe Im2colLayer).

    Reads ``convolution_param`` (kernel, stride, pad, dilation, axis; num_output and the
    rest are ignored). The top has C * prod(kernel) channels, channel-major, and the
    convolution's output size on each spatial axis. From src/caffe/layers/im2col_layer.cpp.

    ``Im2colLayer::Reshape`` sizes each axis as ConvolutionLayer's
    ``compute_output_shape`` does (``(in + 2 pad - extent) / stride + 1`` in C++ ints) and
    checks no window against its input, so a window larger than the padded input is
    Caffe's side with a warning, as for Convolution (a placeholder input).
    """

    caffe_names = ("IM2COL",)
    caffe_params = ("convolution_param",)
    Params = Im2colParams

    def shape(self, p: Im2colParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        b = bottoms[0]
        axis, g = im2col_geometry(p, b, ctx)
        top = list(b)
        for i, size in enumerate(b[axis + 1:]):
            top[axis] *= g.kernel[i]
            extent = g.dilation[i] * (g.kernel[i] - 1) + 1
            side = caffe_conv_side(size, g.kernel[i], g.stride[i], g.pad[i], g.dilation[i])
            if size + 2 * g.pad[i] < extent:  # as Convolution: Caffe's side, with a warning
                side = lenient_side(
                    ctx, side, f"kernel {extent} is larger than the padded input "
                    f"{size + 2 * g.pad[i]} (input {size}, pad {g.pad[i]})", "kernel_size")
            top[axis + 1 + i] = side
        return (tuple(top),)

    def lower(self, p: Im2colParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels import plumbing

        axis, g = im2col_geometry(p, bottoms[0], ShapeContext.detached(self.name))
        return Call(plumbing.im2col, {"axis": axis, "kernel": g.kernel, "stride": g.stride,
                                      "pad": g.pad, "dilation": g.dilation})
