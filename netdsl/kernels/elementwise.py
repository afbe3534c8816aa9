"""Element-wise layers: activations, Power, PReLU, Dropout and Eltwise, and the later
additions Clip, Exp, Log and Threshold (BVLC), Swish and ReLU6 (the MobileNet forks).

ReLU, Sigmoid, TanH, AbsVal and ELU lower to torch's own functions (``torch.relu``,
``F.leaky_relu``, ...), which compute Caffe's formulas; the rest (BNLL included) are here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .convolution import Shape, empty_param
from .normalization import broadcastable

__all__ = ["PReLU", "Dropout", "bnll", "eltwise", "power"]


def bnll(x: Tensor) -> Tensor:
    """log(1 + exp(x)), in Caffe's overflow-safe form x>0: x + log(1 + exp(-x))."""
    return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


def power(x: Tensor, power: float = 1.0, scale: float = 1.0, shift: float = 0.0) -> Tensor:
    """``(shift + scale * x) ^ power`` (Caffe PowerLayer)."""
    if power * scale == 0:
        # Caffe's special case: a constant (1 for power 0), with a zero gradient.
        value = 1.0 if power == 0 else shift**power
        return torch.full_like(x, value)
    y = x if scale == 1 else x * scale
    if shift != 0:
        y = y + shift
    if power != 1:
        y = y.pow(power)
    return y


class PReLU(nn.Module):
    """max(x, 0) + a * min(x, 0); ``weight`` is () (shared) or (C,) for axis 1."""

    def __init__(self, weight_shape: Shape) -> None:
        super().__init__()
        self.weight = empty_param(weight_shape)

    def forward(self, x: Tensor) -> Tensor:
        a = broadcastable(self.weight, 1, x.dim())
        return x.clamp(min=0) + a * x.clamp(max=0)


class Dropout(nn.Module):
    """Caffe's dropout: keep with probability 1 - p; with ``scale_train`` the kept values
    are scaled by 1/(1-p) while training (inverted dropout), otherwise the test-phase
    output is scaled by 1 - p instead. ``sample_test`` (SegNet's fork: Monte Carlo
    dropout) samples in the test phase too, as in training."""

    def __init__(self, ratio: float = 0.5, scale_train: bool = True,
                 sample_test: bool = False) -> None:
        super().__init__()
        self.ratio, self.scale_train, self.sample_test = ratio, scale_train, sample_test

    def forward(self, x: Tensor) -> Tensor:
        sampling = self.training or self.sample_test
        if self.scale_train:
            return F.dropout(x, self.ratio, sampling)
        if sampling:
            return F.dropout(x, self.ratio, True) * (1.0 - self.ratio)
        return x * (1.0 - self.ratio)

    def extra_repr(self) -> str:
        return (f"ratio={self.ratio}, scale_train={self.scale_train}, "
                f"sample_test={self.sample_test}")


def eltwise(*inputs: Tensor, op: str = "SUM", coeffs: Sequence[float] | None = None) -> Tensor:
    """Caffe's Eltwise layer: ``SUM`` (optionally weighted by ``coeffs``), ``PROD``, ``MAX``.

    Like Caffe: at least two inputs of identical shape (no broadcasting), and ``coeffs``
    only for SUM, one per input. MAX picks, per element, the input Caffe's mask picks,
    and the whole gradient goes to it: between inputs 0 and 1 a tie goes to input 1
    (Caffe tests ``a > b``), a later input wins only if strictly greater. Caffe's
    ``stable_prod_grad`` only changes how the PROD gradient is computed, not its value.
    """
    op = op.upper()
    if len(inputs) < 2:
        raise ValueError("Eltwise needs at least two inputs")
    shape = inputs[0].shape
    for t in inputs[1:]:
        if t.shape != shape:
            raise ValueError(
                f"Eltwise inputs must have equal shapes: {tuple(shape)} vs {tuple(t.shape)}"
            )
    if coeffs:
        if op != "SUM":
            raise ValueError("Eltwise takes coefficients only for SUM")
        if len(coeffs) != len(inputs):
            raise ValueError(
                f"Eltwise needs one coefficient per input ({len(inputs)}), got {len(coeffs)}"
            )
    else:
        coeffs = None
    if op == "SUM":
        if coeffs is None or all(c == 1 for c in coeffs):
            out = inputs[0] + inputs[1]
            for t in inputs[2:]:
                out = out + t
            return out
        out = inputs[0] * coeffs[0]
        for t, c in zip(inputs[1:], coeffs[1:], strict=True):
            out = out + t * c
        return out
    if op == "PROD":
        out = inputs[0] * inputs[1]
        for t in inputs[2:]:
            out = out * t
        return out
    if op == "MAX":
        a, b = inputs[0], inputs[1]
        out = torch.where(a > b, a, b)
        for t in inputs[2:]:
            out = torch.where(t > out, t, out)
        return out
    raise ValueError(f"unknown Eltwise operation {op!r}")


# --- Clip, Exp, Log, Threshold, Swish (BVLC) and ReLU6 (fork) -----------------------------


def clip(x: Tensor, min: float = 0.0, max: float = 0.0) -> Tensor:
    """Caffe's ClipLayer: ``max(min, min(x, max))``; the gradient passes where
    ``min <= x <= max`` (both ends included), as ``torch.clamp``'s does."""
    return x.clamp(min=min, max=max)


def caffe_exp(x: Tensor, base: float = -1.0, scale: float = 1.0, shift: float = 0.0) -> Tensor:
    """Caffe's ExpLayer: ``base ^ (shift + scale * x)``, base e for -1, computed as Caffe
    does: ``exp(log(base) * scale * x)`` times ``base ^ shift``."""
    import math

    log_base = 1.0 if base == -1 else math.log(base)
    inner = log_base * scale
    outer = 1.0 if shift == 0 else (base**shift if base != -1 else math.exp(shift))
    y = torch.exp(x if inner == 1 else x * inner)
    return y if outer == 1 else y * outer


def caffe_log(x: Tensor, base: float = -1.0, scale: float = 1.0, shift: float = 0.0) -> Tensor:
    """Caffe's LogLayer: ``log_base(shift + scale * x)``, base e for -1."""
    import math

    base_scale = 1.0 if base == -1 else 1.0 / math.log(base)
    y = x if scale == 1 else x * scale
    if shift != 0:
        y = y + shift
    y = torch.log(y)
    return y if base_scale == 1 else y * base_scale


def threshold(x: Tensor, threshold: float = 0.0) -> Tensor:
    """Caffe's ThresholdLayer: 1 where ``x > threshold``, else 0. Caffe has no backward
    for it; neither has this (the output carries no gradient)."""
    return (x > threshold).to(x.dtype)


def swish(x: Tensor, beta: float = 1.0) -> Tensor:
    """Caffe's SwishLayer: ``x * sigmoid(beta * x)``."""
    return x * torch.sigmoid(x if beta == 1 else x * beta)


def relu6(x: Tensor, negative_slope: float = 0.0) -> Tensor:
    """The forks' ReLU6: ``min(max(x, 0) + negative_slope * min(x, 0), 6)``, with their
    gradient: 1 on (0, 6), ``negative_slope`` at and below 0, 0 from 6 up."""
    inner = torch.where(x > 0, x, x * negative_slope) if negative_slope else torch.relu(x)
    return torch.where(x < 6, inner.clamp(max=6.0), torch.full_like(x, 6.0))
