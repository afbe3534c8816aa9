"""Losses and metrics: SoftmaxWithLoss (``softmax_loss_layer.cpp``), EuclideanLoss and
Accuracy (``accuracy_layer.cpp``), each as Caffe computes it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..caffe_math import FLT_MIN

__all__ = [
    "accuracy",
    "accuracy_and_per_class",
    "euclidean_loss",
    "loss_normalization",
    "per_class_accuracy",
    "softmax_with_loss",
    "softmax_with_loss_and_prob",
]

_LOG_FLT_MIN = math.log(FLT_MIN)
_NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def loss_normalization(normalization: str | None = None, normalize: bool | None = None) -> str:
    """Caffe's rule for ``loss_param``: an explicit ``normalization`` wins; otherwise the
    legacy ``normalize`` maps ``true -> VALID`` and ``false -> BATCH_SIZE``; default VALID.
    """
    if normalization is not None:
        mode = normalization.upper()
        if mode not in _NORMALIZATIONS:
            raise ValueError(f"unknown loss normalization {normalization!r}")
        return mode
    if normalize is not None:
        return "VALID" if normalize else "BATCH_SIZE"
    return "VALID"


def _split_axis(x: Tensor, axis: int) -> tuple[int, int, int, int]:
    """``(axis, outer, channels, inner)`` as Caffe's ``CanonicalAxisIndex``/``count``."""
    if not -x.dim() <= axis < x.dim():
        raise ValueError(f"axis {axis} out of range for shape {tuple(x.shape)}")
    axis %= x.dim()
    outer = math.prod(x.shape[:axis])
    inner = math.prod(x.shape[axis + 1 :])
    return axis, outer, int(x.shape[axis]), inner


def _labels_2d(labels: Tensor, outer: int, inner: int) -> Tensor:
    if labels.numel() != outer * inner:
        raise ValueError(
            f"number of labels ({labels.numel()}) must match number of predictions "
            f"({outer} x {inner})"
        )
    # static_cast<int> truncates toward zero, as .long() does for float labels.
    return labels.reshape(outer, inner).to(torch.int64)


def softmax_with_loss(logits: Tensor, labels: Tensor, axis: int = 1,
                      ignore_label: int | None = None, normalization: str | None = "VALID",
                      loss_weight: float = 1.0, normalize: bool | None = None) -> Tensor:
    """Caffe's SoftmaxWithLoss, a 0-dim tensor.

    ``labels`` has the shape of ``logits`` without ``axis`` (any shape with that many
    elements is accepted, as in Caffe; float labels are truncated). The loss is
    ``sum_valid -log(max(p_label, FLT_MIN)) / max(1, normalizer) * loss_weight`` with
    the normaliser from ``normalization`` (FULL: all items, VALID: non-ignored items,
    BATCH_SIZE: the product of dims before ``axis``, NONE: 1). ``normalization=None``
    with legacy ``normalize`` resolves as :func:`loss_normalization`.

    The gradient is Caffe's ``(p - onehot) * loss_weight / normaliser`` (0 for ignored
    items), including where the ``FLT_MIN`` clamp is active.
    """
    mode = loss_normalization(normalization, normalize)
    axis, outer, channels, inner = _split_axis(logits, axis)
    lab = _labels_2d(labels.to(logits.device), outer, inner)
    logp = F.log_softmax(logits.reshape(outer, channels, inner), dim=1)
    if ignore_label is None:
        valid = None
        safe = lab
    else:
        valid = lab != ignore_label
        safe = torch.where(valid, lab, torch.zeros_like(lab))
    nll = -logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    # -log(max(p, FLT_MIN)) == min(-log p, -log FLT_MIN); the clamp is forward-only,
    # Caffe's backward ignores it.
    nll = nll - (nll - nll.clamp(max=-_LOG_FLT_MIN)).detach()
    if valid is not None:
        nll = torch.where(valid, nll, torch.zeros_like(nll))
    total = nll.sum()
    if mode == "VALID" and valid is not None:
        return total / valid.sum().to(total.dtype).clamp(min=1.0) * loss_weight
    normalizer = {"FULL": outer * inner, "VALID": outer * inner, "BATCH_SIZE": outer,
                  "NONE": 1}[mode]
    return total / max(1.0, float(normalizer)) * loss_weight


def softmax_with_loss_and_prob(logits: Tensor, labels: Tensor, axis: int = 1,
                               ignore_label: int | None = None,
                               normalization: str | None = "VALID") -> tuple[Tensor, Tensor]:
    """SoftmaxWithLoss with its optional second top, the softmax probabilities."""
    loss = softmax_with_loss(logits, labels, axis, ignore_label, normalization)
    return loss, torch.softmax(logits, dim=axis)


def euclidean_loss(a: Tensor, b: Tensor) -> Tensor:
    """sum((a - b)^2) / N / 2, b taken in a's shape (Caffe only needs equal counts)."""
    diff = a - b.reshape(a.shape)
    return diff.square().sum() / a.shape[0] / 2


@torch.no_grad()
def _accuracy_hits(scores: Tensor, labels: Tensor, top_k: int, axis: int,
                   ignore_label: int | None) -> tuple[Tensor, Tensor, Tensor, int]:
    """Per item: hit (bool), counted (bool), safe label; plus the number of classes."""
    axis, outer, channels, inner = _split_axis(scores, axis)
    if not 1 <= top_k <= channels:
        raise ValueError(f"top_k must be in [1, {channels}] (the number of classes), got {top_k}")
    lab = _labels_2d(labels.to(scores.device), outer, inner)
    s = scores.reshape(outer, channels, inner)
    if ignore_label is None:
        valid = torch.ones_like(lab, dtype=torch.bool)
        safe = lab
    else:
        valid = lab != ignore_label
        safe = torch.where(valid, lab, torch.zeros_like(lab))
    true_score = s.gather(1, safe.unsqueeze(1))
    # Caffe: num_better_predictions starts at -1 and counts scores >= the true one,
    # the true class included; a hit if fewer than top_k. So ties count against.
    better = (s >= true_score).sum(1) - 1
    return (better < top_k) & valid, valid, safe, channels


def _float_dtype(scores: Tensor) -> torch.dtype:
    return scores.dtype if scores.is_floating_point() else torch.float32


def accuracy(scores: Tensor, labels: Tensor, top_k: int = 1, axis: int = 1,
             ignore_label: int | None = None) -> Tensor:
    """Caffe's Accuracy layer: top-k hit rate, a 0-dim tensor.

    An item is a hit when fewer than ``top_k`` *other* classes score ``>=`` the true
    class (Caffe counts ``bottom >= prob_of_true_class`` starting from -1), so a tie
    with the true class counts against it. Ignored items are not counted; with no
    counted items the accuracy is 0. Not differentiable.
    """
    hit, valid, _, _ = _accuracy_hits(scores, labels, top_k, axis, ignore_label)
    dtype = _float_dtype(scores)
    count = valid.sum().to(dtype)
    return hit.sum().to(dtype) / count.clamp(min=1)


def per_class_accuracy(scores: Tensor, labels: Tensor, top_k: int = 1, axis: int = 1,
                       ignore_label: int | None = None) -> Tensor:
    """Caffe's optional second Accuracy top: hit rate per true class (0 if unseen)."""
    hit, valid, safe, channels = _accuracy_hits(scores, labels, top_k, axis, ignore_label)
    dtype = _float_dtype(scores)
    flat = safe.reshape(-1)
    seen = torch.zeros(channels, dtype=dtype, device=scores.device)
    seen.index_add_(0, flat, valid.reshape(-1).to(dtype))
    hits = torch.zeros(channels, dtype=dtype, device=scores.device)
    hits.index_add_(0, flat, hit.reshape(-1).to(dtype))
    return torch.where(seen > 0, hits / seen.clamp(min=1), torch.zeros_like(hits))


def accuracy_and_per_class(scores: Tensor, labels: Tensor, top_k: int = 1, axis: int = 1,
                           ignore_label: int | None = None) -> tuple[Tensor, Tensor]:
    """Accuracy with its optional second top (:func:`per_class_accuracy`)."""
    args = (top_k, axis, ignore_label)
    return accuracy(scores, labels, *args), per_class_accuracy(scores, labels, *args)
