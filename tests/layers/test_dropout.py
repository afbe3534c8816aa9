from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, params_from_text, rand, shape_error, shapes


def test_names_shape_defaults() -> None:
    assert REGISTRY["DROPOUT"] is REGISTRY["Dropout"]
    assert shapes("Dropout", ((2, 10),)) == ((2, 10),)
    p = params_from_text("Dropout", "dropout_param { dropout_ratio: 0.3 }")
    assert p.dropout_ratio == 0.3 and p.scale_train is True


def test_ratio_must_be_below_one() -> None:
    shape_error("Dropout", ((2, 10),), match="dropout_ratio", field="dropout_ratio",
                dropout_ratio=1.0)
    shape_error("Dropout", ((2, 10),), field="dropout_ratio", dropout_ratio=-0.1)


def test_test_phase_is_identity() -> None:
    x = rand(4, 100)
    m, _ = lower("Dropout", ((4, 100),), dropout_ratio=0.5)
    m.eval()
    close(m(x)[0], x)


def test_train_phase_inverted_scaling() -> None:
    x = rand(50, 200).abs() + 1
    m, _ = lower("Dropout", ((50, 200),), dropout_ratio=0.25)
    m.train()
    y = np_(m(x)[0])
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80
    close(y[kept], np_(x)[kept] / 0.75)


def test_scale_train_false_scales_at_test() -> None:
    x = rand(50, 200).abs() + 1
    m, _ = lower("Dropout", ((50, 200),), dropout_ratio=0.25, scale_train=False)
    m.train()
    y = np_(m(x)[0])
    kept = y != 0
    close(y[kept], np_(x)[kept])
    m.eval()
    close(m(x)[0], np_(x) * 0.75)
    assert np.isfinite(y).all()


def test_segnet_sample_weights_test_samples_in_test_too() -> None:
    """caffe-segnet dropout_layer.cpp: mask and scale when phase == TRAIN or
    sample_weights_test (Bayesian SegNet's Monte Carlo dropout)."""
    p = params_from_text("Dropout",
                         "dropout_param { dropout_ratio: 0.5 sample_weights_test: true }")
    assert p.sample_weights_test
    x = rand(40, 100).abs() + 1
    m, _ = lower("Dropout", ((40, 100),), dropout_ratio=0.5, sample_weights_test=True)
    m.eval()
    y = np_(m(x)[0])
    kept = y != 0
    assert 0.4 < kept.mean() < 0.6
    close(y[kept], np_(x)[kept] * 2)
