"""Convolution, Deconvolution and InnerProduct: the modules that hold weights.

Weights are ``nn.Parameter``s in Caffe's layout, which is torch's for both convolution
directions (``[out, in/group, kh, kw]``; deconvolution ``[in, out/group, kh, kw]``) and
for inner products (``[out, in]``, or ``[in, out]`` with ``transpose``). They are
created empty: the compiler fills them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Conv", "InnerProduct", "empty_param"]

Shape = tuple[int, ...]

# Typed loosely: the two tables' functions take different arguments (conv_transpose has
# output_padding before groups).
_CONV: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T: dict[int, Callable[..., Tensor]] = {
    1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def empty_param(shape: Shape) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape))


class Conv(nn.Module):
    """Convolution (or, ``transposed``, Deconvolution) applied to each bottom with one
    set of weights, as Caffe's layer does with several bottoms."""

    def __init__(self, shapes: Mapping[str, Shape], stride: Sequence[int], pad: Sequence[int],
                 dilation: Sequence[int], groups: int, transposed: bool = False) -> None:
        super().__init__()
        self.weight = empty_param(shapes["weight"])
        self.bias = empty_param(shapes["bias"]) if "bias" in shapes else None
        n = len(shapes["weight"]) - 2
        table = _CONV_T if transposed else _CONV
        if n not in table:
            raise NotImplementedError(f"{n}-D convolution has no torch lowering (1 to 3 only)")
        self._fn = table[n]
        self.stride, self.pad, self.dilation = tuple(stride), tuple(pad), tuple(dilation)
        self.groups, self.transposed = groups, transposed

    def _one(self, x: Tensor) -> Tensor:
        if self.transposed:
            return self._fn(x, self.weight, self.bias, self.stride, self.pad, 0, self.groups,
                            self.dilation)
        return self._fn(x, self.weight, self.bias, self.stride, self.pad, self.dilation,
                        self.groups)

    def forward(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(xs) == 1:
            return self._one(xs[0])
        return tuple(self._one(x) for x in xs)

    def extra_repr(self) -> str:
        return (f"weight={list(self.weight.shape)}, stride={self.stride}, pad={self.pad}, "
                f"dilation={self.dilation}, groups={self.groups}, "
                f"transposed={self.transposed}, bias={self.bias is not None}")


class InnerProduct(nn.Module):
    """Axes from ``axis`` on are flattened into the inputs; weight (out, in), or (in, out)
    with ``transpose``."""

    def __init__(self, shapes: Mapping[str, Shape], axis: int, transpose: bool) -> None:
        super().__init__()
        self.weight = empty_param(shapes["weight"])
        self.bias = empty_param(shapes["bias"]) if "bias" in shapes else None
        self.axis, self.transpose = axis, transpose

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(*x.shape[: self.axis], -1)
        if self.transpose:
            y = x @ self.weight
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"weight={list(self.weight.shape)}, axis={self.axis}, "
                f"transpose={self.transpose}, bias={self.bias is not None}")


class Embed(nn.Module):
    """Caffe's EmbedLayer: each input value, truncated to an integer, picks a row of
    ``weight`` (input_dim, num_output), plus the bias; the input gets no gradient."""

    def __init__(self, shapes: Mapping[str, Shape]) -> None:
        super().__init__()
        self.weight = empty_param(shapes["weight"])
        self.bias = empty_param(shapes["bias"]) if "bias" in shapes else None

    def forward(self, x: Tensor) -> Tensor:
        y = F.embedding(x.detach().long(), self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"weight={list(self.weight.shape)}, bias={self.bias is not None}"
