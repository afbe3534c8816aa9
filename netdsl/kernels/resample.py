"""Resampling kernels of the segmentation forks: SegNet's max-unpooling (its ``Upsample``
layer, alexgkendall/caffe-segnet ``upsample_layer.cpp``) and DeepLab's bilinear
``Interp`` (DeepLab v2's Caffe ``interp_layer.cpp`` with ``util/interp.cpp``, as
hszhao/PSPNet ships it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .normalization import legacy_4d

__all__ = ["interp", "interp_axis", "interp_like", "max_unpool"]


class _Unpool(torch.autograd.Function):
    """Caffe's Upsample on (N, C, H*W) planes: ``top[index[i]] = x[i]`` with Caffe's CPU
    loop order (a later ``i`` overwrites an earlier one at the same position), and
    Caffe's backward ``dx[i] = dtop[index[i]]`` (which also reaches the overwritten
    ``i``: not the gradient of the forward where positions repeat). ``index == size``
    marks an entry that is dropped (and gets no gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, index: Tensor, size: int) -> Tensor:
        n, c, hw = x.shape
        order = torch.arange(hw, device=x.device).expand(n, c, hw)
        winner = torch.full((n, c, size + 1), -1, dtype=torch.long, device=x.device)
        winner = winner.scatter_reduce(2, index, order, reduce="amax")[..., :size]
        top = x.gather(2, winner.clamp(min=0))
        top = torch.where(winner >= 0, top, torch.zeros_like(top))
        ctx.save_for_backward(index)
        return top

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        (dtop,) = grads
        (index,) = ctx.saved_tensors
        return F.pad(dtop, (0, 1)).gather(2, index), None, None


#: The largest count of positions a low-precision float mask holds exactly (2^(mantissa+1)).
_EXACT_INTEGERS = {torch.bfloat16: 256, torch.float16: 2048}


def max_unpool(x: Tensor, mask: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """SegNet's Upsample: a zero ``(N, C, *out_hw)`` map with each value of ``x`` placed at
    the position its ``mask`` entry gives (``h * W_out + w`` in its plane, as Caffe's
    MAX Pooling mask: netdsl's ``pool2d_with_mask``), the mask read as Caffe does
    (``static_cast<int>``). Where Caffe aborts (a position past the map) or writes outside
    it (a negative position, such as an empty window's -1), the entry is dropped."""
    if x.dim() != 4 or mask.shape != x.shape:
        raise ValueError(f"Upsample needs 4-D input and mask of one shape, got "
                         f"{tuple(x.shape)} and {tuple(mask.shape)}")
    n, c, h, w = x.shape
    size = out_hw[0] * out_hw[1]
    exact = _EXACT_INTEGERS.get(mask.dtype)
    if exact is not None and size > exact:
        raise ValueError(
            f"an Upsample mask in {mask.dtype} cannot name the {size} positions of a "
            f"{out_hw[0]}x{out_hw[1]} map (exact up to {exact}): the mask must be float32, "
            "as Caffe's is")
    index = mask.detach().reshape(n, c, h * w).to(torch.long)
    index = torch.where((index >= 0) & (index < size), index, torch.full_like(index, size))
    flat = x.reshape(n, c, h * w)
    top: Tensor = _Unpool.apply(flat, index, size)  # type: ignore[no-untyped-call]  # untyped
    return top.reshape(n, c, *out_hw)


def interp_axis(size_in: int, size_out: int, device: torch.device | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """The source rows (or columns) of DeepLab's ``caffe_cpu_interp2`` along one axis:
    ``(first, second, lambda)``, output ``o`` reading ``first[o]`` with weight
    ``1 - lambda[o]`` and ``second[o]`` with ``lambda[o]``.

    As in the C++, in float32 whatever the data type: ``r = float(in - 1) / (out - 1)``
    (0 for one output), ``pos = r * o``, ``first = int(pos)``, ``lambda = pos - first``,
    ``second = first + 1`` unless ``first`` is the last row: corners aligned, as
    ``align_corners=True``.
    """
    ratio = np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1 else 0.0
    pos = torch.arange(size_out, dtype=torch.float32, device=device) * float(ratio)
    first = pos.to(torch.long)
    second = first + (first < size_in - 1).to(torch.long)
    return first, second, pos - first.to(torch.float32)


def interp(x: Tensor, out_hw: tuple[int, int], pad_beg: int = 0, pad_end: int = 0) -> Tensor:
    """DeepLab's Interp: crop ``-pad_beg`` rows and columns at the start and ``-pad_end``
    at the end (the pads are <= 0), then resize the crop bilinearly to ``out_hw`` with
    :func:`interp_axis`'s weights, Caffe's arithmetic order (along the width, then the
    height: ``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)``), and a plain copy where
    the crop already has the output's size. Autograd gives Caffe's adjoint
    (``caffe_cpu_interp2_backward``), up to the order of the sums."""
    if pad_beg > 0 or pad_end > 0:
        raise ValueError("Interp supports only non-positive padding (cropping)")
    x4 = legacy_4d(x)
    h, w = x4.shape[2], x4.shape[3]
    crop = x4[:, :, -pad_beg: h + pad_end, -pad_beg: w + pad_end]
    h_in, w_in = crop.shape[2], crop.shape[3]
    if (h_in, w_in) == tuple(out_hw):
        return crop.clone()
    rows0, rows1, row_l = interp_axis(h_in, out_hw[0], x.device)
    cols0, cols1, col_l = interp_axis(w_in, out_hw[1], x.device)
    col_l1 = col_l.to(x.dtype)
    row_l1 = row_l.to(x.dtype)[:, None]
    col_l0, row_l0 = 1 - col_l1, 1 - row_l1
    across = col_l0 * crop.index_select(3, cols0) + col_l1 * crop.index_select(3, cols1)
    return row_l0 * across.index_select(2, rows0) + row_l1 * across.index_select(2, rows1)


def interp_like(x: Tensor, reference: Tensor, out_hw: tuple[int, int], pad_beg: int = 0,
                pad_end: int = 0) -> Tensor:
    """Interp with a second bottom that only gives the output size (``out_hw``, known
    when the layer is lowered); its values are not read."""
    return interp(x, out_hw, pad_beg, pad_end)
