"""netdsl.kernels.losses against numpy transcriptions of Caffe's C++ loss/metric loops.

``caffe_softmax_loss_ref`` follows ``SoftmaxWithLossLayer::Forward_cpu`` /
``Backward_cpu`` with ``get_normalizer`` (the ``FLT_MIN`` clamp, the four normalisation
modes, ignored labels) and ``caffe_accuracy_ref`` follows ``AccuracyLayer::Forward_cpu``
(both tops, with Caffe's tie rule); the kernels' values and gradients must agree with
them to float64 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netdsl.caffe_math import FLT_MIN
from netdsl.kernels.losses import (
    accuracy,
    loss_normalization,
    per_class_accuracy,
    softmax_with_loss,
)
from tests.kernels.caffe_refs import _t

# --------------------------------------------------------------------------------------
# Reference transcriptions of Caffe
# --------------------------------------------------------------------------------------


def _outer_inner(shape, axis):
    axis %= len(shape)
    return axis, int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1 :]))


def caffe_softmax_loss_ref(logits, labels, axis, ignore_label, mode, loss_weight):
    """SoftmaxWithLossLayer Forward_cpu / Backward_cpu with get_normalizer."""
    axis, outer, channels, inner = _outer_inner(logits.shape, axis)
    z = logits.reshape(outer, channels, inner)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    label = labels.reshape(-1)
    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            label_value = int(label[i * inner + j])
            if ignore_label is not None and label_value == ignore_label:
                continue
            loss -= math.log(max(prob[i, label_value, j], FLT_MIN))
            count += 1
    normalizer = {
        "FULL": outer * inner,
        "VALID": count,
        "BATCH_SIZE": outer,
        "NONE": 1,
    }[mode]
    normalizer = max(1.0, float(normalizer))
    diff = prob.copy()
    for i in range(outer):
        for j in range(inner):
            label_value = int(label[i * inner + j])
            if ignore_label is not None and label_value == ignore_label:
                diff[i, :, j] = 0
            else:
                diff[i, label_value, j] -= 1
    diff *= loss_weight / normalizer
    return loss / normalizer, diff.reshape(logits.shape)


def caffe_accuracy_ref(scores, labels, top_k, axis, ignore_label):
    """AccuracyLayer::Forward_cpu (master): both tops."""
    axis, outer, num_labels, inner = _outer_inner(scores.shape, axis)
    data = scores.reshape(outer, num_labels, inner)
    label = labels.reshape(-1)
    acc, count = 0, 0
    nums = np.zeros(num_labels)
    per_class = np.zeros(num_labels)
    for i in range(outer):
        for j in range(inner):
            label_value = int(label[i * inner + j])
            if ignore_label is not None and label_value == ignore_label:
                continue
            nums[label_value] += 1
            prob_of_true_class = data[i, label_value, j]
            num_better_predictions = -1
            k = 0
            while k < num_labels and num_better_predictions < top_k:
                num_better_predictions += data[i, k, j] >= prob_of_true_class
                k += 1
            if num_better_predictions < top_k:
                acc += 1
                per_class[label_value] += 1
            count += 1
    per_class = np.where(nums == 0, 0.0, per_class / np.maximum(nums, 1))
    return (0.0 if count == 0 else acc / count), per_class


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("shape,axis", [((5, 4), 1), ((2, 3, 4, 2), 1), ((2, 3, 4), -1)])
@pytest.mark.parametrize("ignore_label", [None, 1])
def test_softmax_with_loss_matches_caffe(mode, shape, axis, ignore_label):
    rng = np.random.default_rng(len(shape) * 10 + (ignore_label or 0))
    logits = rng.normal(size=shape) * 3
    a, _, channels, _ = _outer_inner(shape, axis)
    label_shape = shape[:a] + shape[a + 1 :]
    labels = rng.integers(0, channels, size=label_shape).astype(np.float64)
    loss_ref, diff_ref = caffe_softmax_loss_ref(logits, labels, axis, ignore_label, mode, 0.7)
    lt = _t(logits, grad=True)
    loss = softmax_with_loss(lt, torch.tensor(labels), axis, ignore_label, mode, loss_weight=0.7)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), 0.7 * loss_ref, rtol=1e-12)
    (grad,) = torch.autograd.grad(loss, lt)
    np.testing.assert_allclose(grad.numpy(), diff_ref, rtol=1e-10, atol=1e-14)


def test_softmax_with_loss_flt_min_clamp_and_caffe_gradient():
    logits = _t(np.array([[0.0, 200.0], [1.0, 0.0]]), grad=True)
    labels = torch.tensor([0, 0])
    loss = softmax_with_loss(logits, labels, normalization="NONE")
    loss_ref, diff_ref = caffe_softmax_loss_ref(
        logits.detach().numpy(), labels.numpy(), 1, None, "NONE", 1.0
    )
    assert loss.item() == pytest.approx(loss_ref, rel=1e-12)
    assert loss.item() < 87.34 + 1.0  # -log(FLT_MIN) + the second item's loss
    (grad,) = torch.autograd.grad(loss, logits)
    np.testing.assert_allclose(grad.numpy(), diff_ref, atol=1e-14)


def test_softmax_with_loss_all_ignored_and_legacy_normalize():
    logits = torch.randn(3, 4, dtype=torch.float64)
    labels = torch.full((3,), -1)
    assert softmax_with_loss(logits, labels, ignore_label=-1).item() == 0.0
    assert loss_normalization() == "VALID"
    assert loss_normalization(None, normalize=False) == "BATCH_SIZE"
    assert loss_normalization(None, normalize=True) == "VALID"
    assert loss_normalization("full", normalize=False) == "FULL"
    labels = torch.tensor([0, 1, 2])
    by_legacy = softmax_with_loss(logits, labels, normalization=None, normalize=False)
    by_mode = softmax_with_loss(logits, labels, normalization="BATCH_SIZE")
    assert torch.equal(by_legacy, by_mode)
    with pytest.raises(ValueError, match="normalization"):
        loss_normalization("MEAN")
    with pytest.raises(ValueError, match="number of labels"):
        softmax_with_loss(logits, torch.zeros(4))


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("shape,axis", [((30, 5), 1), ((3, 4, 2, 3), 1), ((4, 3, 5), 2)])
@pytest.mark.parametrize("ignore_label", [None, 0])
def test_accuracy_matches_caffe_including_ties(top_k, shape, axis, ignore_label):
    rng = np.random.default_rng(top_k * 7 + len(shape))
    scores = rng.integers(0, 3, size=shape).astype(np.float64)  # many ties
    a, _, channels, _ = _outer_inner(shape, axis)
    labels = rng.integers(0, channels, size=shape[:a] + shape[a + 1 :])
    acc_ref, per_class_ref = caffe_accuracy_ref(scores, labels, top_k, axis, ignore_label)
    acc = accuracy(torch.tensor(scores), torch.tensor(labels), top_k, axis, ignore_label)
    assert acc.item() == pytest.approx(acc_ref, abs=1e-15)
    per_class = per_class_accuracy(
        torch.tensor(scores), torch.tensor(labels), top_k, axis, ignore_label
    )
    np.testing.assert_allclose(per_class.numpy(), per_class_ref)


def test_accuracy_tie_counts_against_the_hit():
    scores = torch.tensor([[1.0, 1.0, 0.0]])
    assert accuracy(scores, torch.tensor([0])).item() == 0.0
    assert accuracy(scores, torch.tensor([1])).item() == 0.0
    assert accuracy(scores, torch.tensor([1]), top_k=2).item() == 1.0
    assert accuracy(scores, torch.tensor([0]), ignore_label=0).item() == 0.0  # no items
    with pytest.raises(ValueError, match="top_k"):
        accuracy(scores, torch.tensor([0]), top_k=4)
