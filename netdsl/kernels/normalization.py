"""Caffe's BatchNorm (``batch_norm_layer.cpp``) and its Scale and Bias layers; Caffe's MVN;
the BN layer (scale and shift of its own) of SegNet's and ENet's Caffe forks."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .convolution import Shape, empty_param

__all__ = ["BatchNorm", "BatchNormStats", "BatchStatistics", "Reduce", "ScaleBias", "SegNetBN",
           "batch_moments", "batch_norm", "bn_global_stats", "legacy_4d", "mvn"]

#: A differentiable sum of a tensor over the processes of a run.
Reduce = Callable[[Tensor], Tensor]


class BatchNormStats(NamedTuple):
    """Caffe's three BatchNorm blobs: running sums and their scale factor (shape (1,))."""

    mean: Tensor
    variance: Tensor
    scale_factor: Tensor


def bn_global_stats(mean_blob: Tensor, variance_blob: Tensor, scale_factor_blob: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """The mean and variance Caffe uses with ``use_global_stats``: blobs / scale factor,
    or zeros when the factor is 0. These are also torch BatchNorm's running stats."""
    sf = scale_factor_blob.reshape(-1)[0]
    inv = torch.where(sf == 0, torch.zeros_like(sf), 1.0 / sf)
    return mean_blob * inv, variance_blob * inv


def batch_moments(x3: Tensor, reduce: Reduce | None = None) -> tuple[Tensor, Tensor, int]:
    """The per-channel mean and biased variance of ``x3`` ``(N, C, S)`` over N and S, and
    the count ``N * S``. With ``reduce`` (a differentiable sum over processes), over every
    process's batch: two passes, the mean first, as exact as one process's."""
    m = x3.shape[0] * x3.shape[2]
    if reduce is None:
        mean = x3.mean(dim=(0, 2))
        return mean, (x3 - mean[None, :, None]).square().mean(dim=(0, 2)), m
    sums = reduce(torch.cat([x3.sum(dim=(0, 2)), x3.new_full((1,), float(m))]))
    total = sums[-1]
    mean = sums[:-1] / total
    var = reduce((x3 - mean[None, :, None]).square().sum(dim=(0, 2))) / total
    return mean, var, int(round(float(total.detach())))


class BatchStatistics(nn.Module):
    """A layer that normalises with statistics of the batch (BatchNorm, BN). ``reduce``,
    when set (``CompiledNet.sync_batch_statistics``), sums them over processes, so that a
    data-parallel run normalises with the global batch's, as torch's SyncBatchNorm."""

    reduce: Reduce | None = None


def batch_norm(x: Tensor, mean_blob: Tensor, variance_blob: Tensor, scale_factor_blob: Tensor,
               use_global_stats: bool, moving_average_fraction: float = 0.999,
               eps: float = 1e-5, reduce: Reduce | None = None
               ) -> tuple[Tensor, BatchNormStats | None]:
    """Caffe's BatchNorm forward; no scale/shift (that is Caffe's separate Scale layer).
    ``x`` is ``(N, C, *spatial)`` (or ``(N,)``: one channel).

    With ``use_global_stats`` (Caffe's default in TEST): normalise with
    :func:`bn_global_stats`; returns ``(y, None)``.

    Otherwise normalise with the batch mean and the *biased* batch variance over
    ``N * spatial`` items, and return the updated blobs (detached, new tensors; the
    inputs are not modified): ``scale_factor = maf * scale_factor + 1``,
    ``mean = maf * mean + batch_mean``, ``variance = maf * variance + m / (m - 1) *
    batch_var`` with ``m = N * spatial`` (factor 1 if ``m == 1``). ``y = (x - mean) /
    sqrt(var + eps)``; autograd gives Caffe's backward in both modes.

    ``reduce``: the statistics of every process's batch (see :func:`batch_moments`).

    Unlike torch's BatchNorm (running = (1 - momentum) * running + momentum * batch),
    the effective estimate ``blob / scale_factor`` is a *normalised* weighted average:
    after the first training step it equals that batch's statistics exactly.
    """
    if x.dim() == 1:
        x3 = x.reshape(-1, 1, 1)
    elif x.dim() >= 2:
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
    else:
        raise ValueError("BatchNorm needs at least one axis")
    channels = x3.shape[1]
    if mean_blob.numel() != channels or variance_blob.numel() != channels:
        raise ValueError(
            f"BatchNorm blobs have {mean_blob.numel()}/{variance_blob.numel()} entries "
            f"for {channels} channels"
        )
    new_stats = None
    if use_global_stats:
        mean, var = bn_global_stats(
            mean_blob.reshape(-1), variance_blob.reshape(-1), scale_factor_blob
        )
        mean, var = mean.to(x.dtype), var.to(x.dtype)
    else:
        mean, var, m = batch_moments(x3, reduce)
        with torch.no_grad():
            correction = m / (m - 1) if m > 1 else 1.0
            maf = moving_average_fraction
            new_stats = BatchNormStats(
                mean=(mean_blob.reshape(-1) * maf + mean.detach()).reshape(mean_blob.shape),
                variance=(variance_blob.reshape(-1) * maf + var.detach() * correction).reshape(
                    variance_blob.shape
                ),
                scale_factor=scale_factor_blob * maf + 1.0,
            )
    y = (x3 - mean[None, :, None]) / (var + eps).sqrt()[None, :, None]
    return y.reshape(x.shape), new_stats


class BatchNorm(BatchStatistics):
    """Caffe BatchNorm owning its three blobs as buffers (``mean``, ``variance``,
    ``scale_factor``, zeros as in Caffe), named as Caffe orders them.

    ``use_global_stats=None`` follows Caffe's default: global stats in eval (TEST),
    batch stats and buffer updates in train.
    """

    mean: Tensor
    variance: Tensor
    scale_factor: Tensor

    def __init__(self, channels: int, use_global_stats: bool | None = None,
                 moving_average_fraction: float = 0.999, eps: float = 1e-5) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("variance", torch.zeros(channels))
        self.register_buffer("scale_factor", torch.zeros(1))
        self.use_global_stats = use_global_stats
        self.moving_average_fraction = moving_average_fraction
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        use_global = not self.training if self.use_global_stats is None else self.use_global_stats
        y, stats = batch_norm(x, self.mean, self.variance, self.scale_factor, use_global,
                              self.moving_average_fraction, self.eps, self.reduce)
        if stats is not None:
            with torch.no_grad():
                self.mean.copy_(stats.mean)
                self.variance.copy_(stats.variance)
                self.scale_factor.copy_(stats.scale_factor)
        return y

    def extra_repr(self) -> str:
        return (f"{self.mean.numel()}, use_global_stats={self.use_global_stats}, "
                f"moving_average_fraction={self.moving_average_fraction}, eps={self.eps}")


def broadcastable(t: Tensor, axis: int, ndim: int) -> Tensor:
    """View an operand covering axes axis..axis+k-1 of an ndim-D blob for broadcasting."""
    if t.dim() == 0:
        return t
    return t.reshape(*t.shape, *([1] * (ndim - axis - t.dim())))


class ScaleBias(nn.Module):
    """Scale and/or Bias: ``x * scale + bias``, each operand broadcast from its axis.

    The scale is the learned ``weight`` (when ``weight_shape`` is given) or the second
    bottom (``scale_from_bottom``); likewise the bias (``bias_shape`` / ``bias_from_bottom``).
    """

    def __init__(self, weight_shape: Shape | None, weight_axis: int, bias_shape: Shape | None,
                 bias_axis: int, scale_from_bottom: bool = False,
                 bias_from_bottom: bool = False) -> None:
        super().__init__()
        self.weight = None if weight_shape is None else empty_param(weight_shape)
        self.bias = None if bias_shape is None else empty_param(bias_shape)
        self.weight_axis, self.bias_axis = weight_axis, bias_axis
        self.scale_from_bottom, self.bias_from_bottom = scale_from_bottom, bias_from_bottom

    def forward(self, x: Tensor, operand: Tensor | None = None) -> Tensor:
        n = x.dim()
        scale = operand if self.scale_from_bottom else self.weight
        bias = operand if self.bias_from_bottom else self.bias
        y = x
        if scale is not None:
            y = y * broadcastable(scale, self.weight_axis, n)
        if bias is not None:
            y = y + broadcastable(bias, self.bias_axis, n)
        return y

    def extra_repr(self) -> str:
        return f"weight_axis={self.weight_axis}, bias_axis={self.bias_axis}"


def legacy_4d(x: Tensor) -> Tensor:
    """``x`` as Caffe's legacy accessors (``num()``, ``channels()``, ``height()``,
    ``width()``) see it: missing trailing axes are 1 (``Blob::LegacyShape``). Layers whose
    Reshape is ``top->Reshape(num, channels, height, width)`` (MVN, BN, Interp) so make a
    4-D top from a 2-D bottom."""
    if x.dim() > 4:
        raise ValueError(f"Caffe's legacy accessors take at most 4 axes, got {tuple(x.shape)}")
    return x.reshape(*x.shape, *([1] * (4 - x.dim())))


def mvn(x: Tensor, normalize_variance: bool = True, across_channels: bool = False,
        eps: float = 1e-9) -> Tensor:
    """Caffe's MVN (BVLC ``mvn_layer.cpp``): subtract the mean of each (n, c) plane, or of
    each item with ``across_channels``; then divide by the *biased* standard deviation
    plus ``eps`` (``sigma + eps``, not ``sqrt(var + eps)``). The top is 4-D (see
    :func:`legacy_4d`).

    Caffe's ``Backward_cpu`` is ``(dy - mean(dy) - y * mean(y * dy)) / (sigma + eps)``: the
    exact gradient only for ``eps == 0``. It is the gradient of ``centred / s`` with
    ``s = sqrt(var + c)`` and ``c = (sigma + eps)^2 - var`` held constant, so the
    denominator takes its value from ``sigma + eps`` and its gradient from that ``s``.
    """
    x4 = legacy_4d(x)
    n, c = x4.shape[0], x4.shape[1]
    rows = x4.reshape(n, -1) if across_channels else x4.reshape(n * c, -1)
    centred = rows - rows.mean(dim=1, keepdim=True)
    if not normalize_variance:
        return centred.reshape(x4.shape)
    var = centred.square().mean(dim=1, keepdim=True)
    denom = (var.sqrt() + eps).detach()
    surrogate = (var + (denom.square() - var).detach()).sqrt()
    denom = denom + (surrogate - surrogate.detach())
    return (centred / denom).reshape(x4.shape)


#: SegNet's and ENet's BN adds this to the batch variance (``var_eps_``, not a field).
SEGNET_BN_EPS = 1e-9


class SegNetBN(BatchStatistics):
    """The BN layer of SegNet's Caffe (alexgkendall/caffe-segnet ``bn_layer.cpp``; ENet's
    fork, TimoSaemann/caffe-enet, has the same code): learned ``scale`` and ``shift``
    blobs of shape (1, C, 1, 1) and no running statistics.

    ``learn`` (``bn_mode: LEARN``, in both phases): ``y = (x - mean) / sqrt(var + 1e-9) *
    scale + shift`` with the batch mean and biased variance over N, H and W; the second
    and third tops (``stats_tops``) are that mean and variance, (1, C, 1, 1), which
    Caffe's backward ignores (detached here). INFERENCE: ``y = x * scale + shift``, the
    statistics having been folded into the blobs (SegNet's compute_bn_statistics.py).

    Caffe computes the variance as ``E(x^2) - E(x)^2``; this takes ``E((x - mean)^2)``,
    equal in exact arithmetic and never negative. Autograd gives Caffe's backward in
    both modes.
    """

    scale: nn.Parameter
    shift: nn.Parameter

    def __init__(self, channels: int, learn: bool = True, stats_tops: int = 0) -> None:
        super().__init__()
        if not 0 <= stats_tops <= (2 if learn else 0):
            raise ValueError(f"BN has {stats_tops} statistics tops; at most 2, in LEARN mode")
        self.scale = empty_param((1, channels, 1, 1))
        self.shift = empty_param((1, channels, 1, 1))
        self.learn, self.stats_tops = learn, stats_tops

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        x4 = legacy_4d(x)
        if not self.learn:
            return x4 * self.scale + self.shift
        mean, var, _ = batch_moments(x4.flatten(2), self.reduce)
        mean, var = mean.reshape(1, -1, 1, 1), var.reshape(1, -1, 1, 1)
        y = (x4 - mean) / (var + SEGNET_BN_EPS).sqrt() * self.scale + self.shift
        if not self.stats_tops:
            return y
        return (y, mean.detach(), var.detach())[: 1 + self.stats_tops]

    def extra_repr(self) -> str:
        mode = "LEARN" if self.learn else "INFERENCE"
        return f"{self.scale.shape[1]}, bn_mode={mode}, stats_tops={self.stats_tops}"
