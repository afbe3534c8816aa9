"""Losses and metrics, each as Caffe computes it: SoftmaxWithLoss (``softmax_loss_layer.cpp``),
EuclideanLoss, Accuracy (``accuracy_layer.cpp``), SigmoidCrossEntropyLoss, ContrastiveLoss,
HingeLoss, InfogainLoss, MultinomialLogisticLoss and Fast R-CNN's SmoothL1Loss.

Where Caffe's hand-written backward is not the exact derivative of its forward (a clamp
it ignores, a ``+ 1e-4`` in a denominator), the kernel adds a term whose value is zero
and whose gradient makes up the difference (``v - (v - w).detach()``), so autograd gives
Caffe's gradient and the forward value stays Caffe's."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..caffe_math import FLT_MIN

__all__ = [
    "InfogainLoss",
    "accuracy",
    "accuracy_and_per_class",
    "contrastive_loss",
    "euclidean_loss",
    "hinge_loss",
    "infogain_loss",
    "infogain_loss_and_prob",
    "loss_normalization",
    "multinomial_logistic_loss",
    "per_class_accuracy",
    "sigmoid_cross_entropy_loss",
    "smooth_l1_loss",
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
                      loss_weight: float = 1.0, normalize: bool | None = None,
                      class_weighting: tuple[float, ...] | None = None) -> Tensor:
    """Caffe's SoftmaxWithLoss, a 0-dim tensor.

    ``labels`` has the shape of ``logits`` without ``axis`` (any shape with that many
    elements is accepted, as in Caffe; float labels are truncated). The loss is
    ``sum_valid -log(max(p_label, FLT_MIN)) / max(1, normalizer) * loss_weight`` with
    the normaliser from ``normalization`` (FULL: all items, VALID: non-ignored items,
    BATCH_SIZE: the product of dims before ``axis``, NONE: 1). ``normalization=None``
    with legacy ``normalize`` resolves as :func:`loss_normalization`.

    The gradient is Caffe's ``(p - onehot) * loss_weight / normaliser`` (0 for ignored
    items), including where the ``FLT_MIN`` clamp is active.

    ``class_weighting`` (SegNet's fork, ``weight_by_label_freqs``): each item's loss and
    gradient times its label's weight; the normaliser still counts items.
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
    if class_weighting is not None:
        weights = torch.tensor(class_weighting, dtype=nll.dtype, device=nll.device)
        nll = nll * weights[safe]
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
                               normalization: str | None = "VALID",
                               class_weighting: tuple[float, ...] | None = None
                               ) -> tuple[Tensor, Tensor]:
    """SoftmaxWithLoss with its optional second top, the softmax probabilities."""
    loss = softmax_with_loss(logits, labels, axis, ignore_label, normalization,
                             class_weighting=class_weighting)
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


# --------------------------------------------------------------------------- more of Caffe's losses

#: ``kLOG_THRESHOLD`` of Caffe's ``loss_layer.hpp``: probabilities are clamped here before log.
LOG_THRESHOLD = 1e-20


def _normalizer(mode: str, outer: int, inner: int, valid: Tensor | None, like: Tensor
                ) -> Tensor | float:
    """Caffe's ``get_normalizer``, floored at 1: FULL ``outer * inner``, VALID the number
    of items not ignored (all of them without an ignore label), BATCH_SIZE ``outer``,
    NONE 1."""
    if mode == "VALID" and valid is not None:
        return valid.sum().to(like.dtype).clamp(min=1.0)
    n = {"FULL": outer * inner, "VALID": outer * inner, "BATCH_SIZE": outer, "NONE": 1}[mode]
    return max(1.0, float(n))


def _grad_only(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` in the forward pass, with ``surrogate``'s gradient."""
    return value.detach() + (surrogate - surrogate.detach())


def sigmoid_cross_entropy_loss(x: Tensor, target: Tensor, ignore_label: int | None = None,
                               normalization: str = "BATCH_SIZE") -> Tensor:
    """Caffe's SigmoidCrossEntropyLoss (``sigmoid_cross_entropy_loss_layer.cpp``).

    Per item, the stable form ``-(x (t - [x >= 0]) - log(1 + exp(x - 2 x [x >= 0])))``;
    items whose truncated target is ``ignore_label`` add nothing. The sum is divided by
    the normaliser of ``normalization`` (:func:`_normalizer`). Written with the mask as a
    constant, its autograd gradient is Caffe's ``(sigmoid(x) - t) / normaliser``, at
    ``x = 0`` too. The target gets no gradient (Caffe refuses to backpropagate to it).
    """
    t = target.detach().reshape(x.shape).to(x.dtype)
    pos = (x >= 0).to(x.dtype)
    per = torch.log1p(torch.exp(x - 2 * x * pos)) - x * (t - pos)
    valid = None
    if ignore_label is not None:
        valid = t.to(torch.int64) != ignore_label
        per = torch.where(valid, per, torch.zeros_like(per))
    outer = x.shape[0] if x.dim() else 1
    return per.sum() / _normalizer(normalization, outer, x.numel() // max(outer, 1), valid, x)


def contrastive_loss(a: Tensor, b: Tensor, similar: Tensor, margin: float = 1.0,
                     legacy_version: bool = False) -> Tensor:
    """Caffe's ContrastiveLoss (``contrastive_loss_layer.cpp``) over N pairs of vectors.

    ``d = ||a_n - b_n||``; similar pairs (label cast to int, non-zero) add ``d^2``,
    dissimilar ones ``max(margin - d, 0)^2`` (``legacy_version``: ``max(margin - d^2, 0)``);
    the sum is divided by ``2 N``. The gradient is Caffe's, whose non-legacy dissimilar
    term divides by ``d + 1e-4`` rather than ``d``.
    """
    n = a.shape[0]
    diff = a.reshape(n, -1) - b.reshape(n, -1)
    sq = (diff * diff).sum(1)
    sim = similar.detach().reshape(-1)[:n].to(torch.int64) != 0
    with torch.no_grad():
        dist_sq = sq.detach()
        if legacy_version:
            mdist = margin - dist_sq
            dissimilar = mdist.clamp(min=0.0)
            coef = torch.where(mdist > 0, -torch.ones_like(mdist), torch.zeros_like(mdist))
        else:
            dist = dist_sq.sqrt()
            mdist = margin - dist
            dissimilar = mdist.clamp(min=0.0).square()
            coef = torch.where(mdist > 0, -mdist / (dist + 1e-4), torch.zeros_like(mdist))
        value = torch.where(sim, dist_sq, dissimilar).sum() / n / 2
        coef = torch.where(sim, torch.ones_like(coef), coef)
    # d(surrogate)/d(diff_n) = coef_n * diff_n / N: Caffe's Backward_cpu.
    surrogate = (coef * sq).sum() / n / 2
    return _grad_only(value, surrogate)


def hinge_loss(x: Tensor, label: Tensor, norm: str = "L1") -> Tensor:
    """Caffe's HingeLoss (``hinge_loss_layer.cpp``): with ``x`` as N rows of scores,
    ``m = max(0, 1 + s x)`` where ``s`` is -1 at the true class and 1 elsewhere; the loss
    is ``sum(m) / N`` (L1) or ``sum(m^2) / N`` (L2). Autograd gives Caffe's backward
    (no gradient where ``m`` is 0)."""
    n = x.shape[0]
    scores = x.reshape(n, -1)
    lab = label.detach().reshape(-1)[:n].to(torch.int64)
    sign = 1 - 2 * torch.zeros_like(scores).scatter(1, lab.unsqueeze(1), 1.0)
    m = F.relu(1 + sign * scores)
    if norm == "L1":
        return m.sum() / n
    if norm == "L2":
        return (m * m).sum() / n
    raise ValueError(f"unknown hinge norm {norm!r} (L1 or L2)")


def _infogain(x: Tensor, labels: Tensor, h: Tensor, axis: int, ignore_label: int | None,
              normalization: str) -> Tensor:
    axis, outer, channels, inner = _split_axis(x, axis)
    if h.numel() != channels * channels:
        raise ValueError(f"the infogain matrix has {h.numel()} values for {channels} labels")
    lab = _labels_2d(labels.detach().to(x.device), outer, inner)
    logp = F.log_softmax(x.reshape(outer, channels, inner), dim=1)
    # log(max(p, kLOG_THRESHOLD)) forward; Caffe's backward ignores the clamp.
    logp = logp - (logp - logp.clamp(min=math.log(LOG_THRESHOLD))).detach()
    valid = None
    safe = lab
    if ignore_label is not None:
        valid = lab != ignore_label
        safe = torch.where(valid, lab, torch.zeros_like(lab))
    rows = h.detach().to(x.dtype).reshape(channels, channels)[safe]  # (outer, inner, C)
    per = -(rows.transpose(1, 2) * logp).sum(1)
    if valid is not None:
        per = torch.where(valid, per, torch.zeros_like(per))
    return per.sum() / _normalizer(normalization, outer, inner, valid, x)


def infogain_loss(x: Tensor, labels: Tensor, h: Tensor, axis: int = 1,
                  ignore_label: int | None = None, normalization: str = "VALID") -> Tensor:
    """Caffe's InfogainLoss (``infogain_loss_layer.cpp``) with the C x C matrix ``h`` as
    a bottom: ``-sum_l H[label, l] log(max(p_l, 1e-20))`` per item, ``p`` the softmax of
    ``x`` along ``axis``, summed over items not ignored and normalised. The gradient is
    Caffe's ``p_l * sum_k H[label, k] - H[label, l]`` over the normaliser; ``h`` and the
    labels get none."""
    return _infogain(x, labels, h, axis, ignore_label, normalization)


def infogain_loss_and_prob(x: Tensor, labels: Tensor, h: Tensor, axis: int = 1,
                           ignore_label: int | None = None, normalization: str = "VALID"
                           ) -> tuple[Tensor, Tensor]:
    """InfogainLoss with its optional second top, the softmax probabilities."""
    return _infogain(x, labels, h, axis, ignore_label, normalization), torch.softmax(x, axis)


class InfogainLoss(nn.Module):
    """InfogainLoss with the matrix read from ``infogain_loss_param { source }``: a
    buffer (not a Caffe blob: Caffe keeps it outside the layer's ``blobs_``)."""

    infogain: Tensor

    def __init__(self, matrix: list[float], num_labels: int, axis: int,
                 ignore_label: int | None, normalization: str, with_prob: bool) -> None:
        super().__init__()
        h = torch.tensor(matrix, dtype=torch.float32).reshape(num_labels, num_labels)
        self.register_buffer("infogain", h, persistent=False)
        self.axis, self.ignore_label = axis, ignore_label
        self.normalization, self.with_prob = normalization, with_prob

    def forward(self, x: Tensor, labels: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        loss = _infogain(x, labels, self.infogain, self.axis, self.ignore_label,
                         self.normalization)
        return (loss, torch.softmax(x, self.axis)) if self.with_prob else loss

    def extra_repr(self) -> str:
        return (f"labels={self.infogain.shape[0]}, axis={self.axis}, "
                f"ignore_label={self.ignore_label}, normalization={self.normalization}")


def multinomial_logistic_loss(prob: Tensor, label: Tensor) -> Tensor:
    """Caffe's MultinomialLogisticLoss (``multinomial_logistic_loss_layer.cpp``): ``prob``
    holds N rows of probabilities; ``-sum_n log(max(p_n[label_n], 1e-20)) / N``. The
    gradient is Caffe's ``-1 / (N max(p, 1e-20))`` at each label, the clamp included."""
    n = prob.shape[0]
    rows = prob.reshape(n, -1)
    lab = label.detach().reshape(-1)[:n].to(torch.int64)
    p = rows.gather(1, lab.unsqueeze(1)).squeeze(1)
    p = p + (p.clamp(min=LOG_THRESHOLD) - p).detach()
    return -torch.log(p).sum() / n


def smooth_l1_loss(pred: Tensor, target: Tensor, inside: Tensor | None = None,
                   outside: Tensor | None = None, sigma: float = 1.0) -> Tensor:
    """Fast R-CNN's SmoothL1Loss (rbgirshick/caffe-fast-rcnn ``smooth_L1_loss_layer.cu``).

    ``d = w_in (pred - target)``; per element ``0.5 (sigma d)^2`` where ``|d| < 1 /
    sigma^2``, else ``|d| - 0.5 / sigma^2``; times ``w_out``; summed and divided by N. The
    weights get no gradient; prediction and target both do (Caffe allows both).
    """
    d = pred - target.reshape(pred.shape)
    if inside is not None:
        d = d * inside.detach().reshape(pred.shape)
    sigma2 = sigma * sigma
    ad = d.abs()
    err = torch.where(ad < 1.0 / sigma2, 0.5 * d * d * sigma2, ad - 0.5 / sigma2)
    if outside is not None:
        err = err * outside.detach().reshape(pred.shape)
    return err.sum() / pred.shape[0]
