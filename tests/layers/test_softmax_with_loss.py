from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers import REGISTRY
from netdsl.layers.softmax_with_loss import Normalization, effective_normalization

from .helpers import close, kind, lower, np_, params, params_from_text, rand, shape_error, shapes


def _reference(x: np.ndarray, labels: np.ndarray, ignore: int | None, mode: str) -> float:
    """Caffe's SoftmaxWithLoss for axis 1 on (N, C, H, W), written out with loops."""
    n, c = x.shape[:2]
    inner = int(np.prod(x.shape[2:]))
    xs = x.reshape(n, c, inner)
    loss, valid = 0.0, 0
    for i in range(n):
        for j in range(inner):
            lab = int(labels.reshape(n, inner)[i, j])
            if ignore is not None and lab == ignore:
                continue
            z = xs[i, :, j] - xs[i, :, j].max()
            p = np.exp(z) / np.exp(z).sum()
            loss -= np.log(max(p[lab], np.finfo(np.float32).tiny))
            valid += 1
    norm = {"FULL": n * inner, "VALID": valid if ignore is not None else n * inner,
            "BATCH_SIZE": n, "NONE": 1}[mode]
    return loss / max(1.0, norm)


def test_names_and_flags() -> None:
    k = REGISTRY["SOFTMAX_LOSS"]
    assert k is REGISTRY["SoftmaxWithLoss"] and k.is_loss
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 2, 1, 2)


def test_shapes() -> None:
    assert shapes("SoftmaxWithLoss", ((8, 10), (8,))) == ((),)
    assert shapes("SoftmaxWithLoss", ((8, 10), (8, 1, 1, 1)), tops=2) == ((), (8, 10))
    assert shapes("SoftmaxWithLoss", ((2, 21, 5, 6), (2, 1, 5, 6))) == ((),)
    assert shapes("SoftmaxWithLoss", ((2, 5, 7), (2, 5)), axis=-1) == ((),)


def test_label_count_must_match() -> None:
    err = shape_error("SoftmaxWithLoss", ((2, 21, 5, 6), (2, 5, 6, 2)), match="60",
                      field="axis", axis=1)
    assert "[2, 5, 6]" in (err.hint or "")


def test_first_dimension_must_match() -> None:
    shape_error("SoftmaxWithLoss", ((8, 10), (4, 2)), match="same first dimension",
                field="bottom")
    shape_error("SoftmaxWithLoss", ((8, 10), (8, 2)), match="16", field="bottom")


def test_normalization_resolution() -> None:
    def eff(**kw: object) -> Normalization:
        return effective_normalization(params("SoftmaxWithLoss", **kw))

    assert eff() is Normalization.VALID
    assert eff(normalize=False) is Normalization.BATCH_SIZE
    assert eff(normalize=True) is Normalization.VALID
    assert eff(normalization=Normalization.VALID, normalize=False) is Normalization.VALID
    assert eff(normalization=Normalization.NONE) is Normalization.NONE


def test_params_from_caffe_text() -> None:
    p = params_from_text(
        "SoftmaxWithLoss",
        "loss_param { ignore_label: 255 normalization: FULL } softmax_param { axis: 1 }",
    )
    assert p.ignore_label == 255 and p.normalization is Normalization.FULL and p.axis == 1


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_lowering_against_reference(mode: str) -> None:
    import torch

    x = rand(2, 4, 3, 3) * 3
    labels = torch.randint(0, 4, (2, 1, 3, 3), generator=torch.Generator().manual_seed(1))
    labels[0, 0, 0, :] = 255
    m, _ = lower("SoftmaxWithLoss", ((2, 4, 3, 3), (2, 1, 3, 3)), ignore_label=255,
                 normalization=Normalization[mode])
    (loss,) = m(x, labels.float())
    assert loss.dim() == 0
    expected = _reference(np_(x), labels.numpy(), 255, mode)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_second_top_is_the_softmax_and_loss_is_unweighted() -> None:
    import torch

    x = rand(5, 7)
    labels = torch.arange(5) % 7
    m, tops = lower("SoftmaxWithLoss", ((5, 7), (5,)), tops=2)
    loss, prob = m(x, labels)
    close(prob, torch.softmax(x, 1))
    expected = _reference(np_(x), labels.numpy(), None, "VALID")
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert tuple(prob.shape) == tops[1]


def test_no_learnable_blobs() -> None:
    assert kind("SoftmaxWithLoss").param_shapes(params("SoftmaxWithLoss"), ((2, 3), (2,))) == {}


# --------------------------------------------------------------------------- SegNet's fork


def _segnet_reference(x: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                      ignore: int | None, normalize: bool) -> tuple[float, np.ndarray]:
    """alexgkendall/caffe-segnet softmax_loss_layer.cpp, Forward_cpu and Backward_cpu
    with weight_by_label_freqs (axis 1, loss_weight 1), written out with loops."""
    n, c = x.shape[:2]
    inner = int(np.prod(x.shape[2:]))
    xs = x.reshape(n, c, inner)
    lab = labels.reshape(n, inner).astype(int)
    prob = np.exp(xs - xs.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    loss, count = 0.0, 0
    diff = prob.copy()
    for i in range(n):
        for j in range(inner):
            v = lab[i, j]
            if ignore is not None and v == ignore:
                diff[i, :, j] = 0
                continue
            loss -= np.log(max(prob[i, v, j], np.finfo(np.float32).tiny)) * weights[v]
            diff[i, v, j] -= 1
            diff[i, :, j] *= weights[v]
            count += 1
    scale = count if normalize else n
    return loss / scale, (diff / scale).reshape(x.shape)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("ignore", [None, 3])
def test_segnet_class_weighting_forward_and_backward(normalize: bool, ignore: int | None
                                                     ) -> None:
    import torch

    weights = (0.2, 1.5, 3.0, 0.7)
    x = rand(2, 4, 3, 5).double().requires_grad_()
    labels = torch.randint(0, 4, (2, 1, 3, 5), generator=torch.Generator().manual_seed(3))
    kw = {"weight_by_label_freqs": True, "class_weighting": weights, "normalize": normalize}
    if ignore is not None:
        kw["ignore_label"] = ignore
    m, _ = lower("SoftmaxWithLoss", ((2, 4, 3, 5), (2, 1, 3, 5)), **kw)
    (loss,) = m(x, labels.double())
    loss.backward()
    want, grad = _segnet_reference(np_(x), labels.numpy(), np.array(weights), ignore,
                                   normalize)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-12, atol=1e-15)


def test_segnet_weights_of_one_are_the_plain_loss() -> None:
    import torch

    x = rand(3, 5)
    labels = torch.tensor([0, 4, 2])
    plain, _ = lower("SoftmaxWithLoss", ((3, 5), (3,)))
    weighted, _ = lower("SoftmaxWithLoss", ((3, 5), (3,)), weight_by_label_freqs=True,
                        class_weighting=(1.0,) * 5)
    close(weighted(x, labels)[0], plain(x, labels)[0])


def test_segnet_fields_from_caffe_text() -> None:
    p = params_from_text("SoftmaxWithLoss", "loss_param { weight_by_label_freqs: true "
                         "class_weighting: 0.2595 class_weighting: 0.1826 ignore_label: 11 }")
    assert p.weight_by_label_freqs and p.class_weighting == (0.2595, 0.1826)
    assert p.ignore_label == 11


def test_segnet_needs_one_weight_per_class() -> None:
    shape_error("SoftmaxWithLoss", ((2, 4, 3, 3), (2, 1, 3, 3)), match="4 classes, 3 values",
                field="class_weighting", weight_by_label_freqs=True,
                class_weighting=(1.0, 2.0, 3.0))
    shape_error("SoftmaxWithLoss", ((2, 4), (2,)), match="4 classes, 0 values",
                field="weight_by_label_freqs", weight_by_label_freqs=True)
    # the fork checks channels() (axis 1) and indexes by label (the class axis)
    shape_error("SoftmaxWithLoss", ((2, 3, 4), (2, 3)), match="3 classes, 4 values",
                axis=2, weight_by_label_freqs=True, class_weighting=(1.0,) * 4)
    assert shapes("SoftmaxWithLoss", ((2, 4, 3, 3), (2, 1, 3, 3)), weight_by_label_freqs=True,
                  class_weighting=(1.0,) * 4) == ((),)


def test_segnet_weights_without_the_flag_warn() -> None:
    from netdsl.diagnostics import collect_warnings

    with collect_warnings() as ws:
        shapes("SoftmaxWithLoss", ((2, 4), (2,)), class_weighting=(1.0,) * 4)
    (w,) = ws
    assert "no effect without weight_by_label_freqs" in w.message
    assert w.span.line == 2  # at class_weighting


def test_segnet_fields_convert_both_ways(tmp_path: Path) -> None:
    from .roundtrip import convert_both_ways

    net, back = convert_both_ways(tmp_path, """
        input: "x" input_shape { dim: 2 dim: 3 dim: 4 dim: 4 }
        input: "y" input_shape { dim: 2 dim: 1 dim: 4 dim: 4 }
        layer { name: "loss" type: "SoftmaxWithLoss" bottom: "x" bottom: "y" top: "loss"
          loss_param { weight_by_label_freqs: true ignore_label: 2
                       class_weighting: 0.5 class_weighting: 1.25 class_weighting: 4 } }""")
    assert "class_weighting: [0.5, 1.25, 4]" in net
    loss = back[back.index('name: "loss"'):]
    block = loss[loss.index("loss_param"):]
    assert "weight_by_label_freqs: true" in block and "class_weighting: 1.25" in block
    assert "softmax_param" not in loss
