from __future__ import annotations

import numpy as np
import pytest

from netdsl.layers import REGISTRY

from .helpers import close, lower, np_, params_from_text, rand, shape_error, shapes


def test_names_and_shapes() -> None:
    k = REGISTRY["ACCURACY"]
    assert k is REGISTRY["Accuracy"] and not k.is_loss
    assert shapes("Accuracy", ((8, 10), (8,))) == ((),)
    assert shapes("Accuracy", ((8, 10), (8,)), tops=2) == ((), (10,))
    assert shapes("Accuracy", ((2, 4, 3), (2, 4)), tops=2, axis=-1) == ((), (3,))


def test_checks() -> None:
    shape_error("Accuracy", ((8, 10), (8,)), match="top_k 11", field="top_k", top_k=11)
    shape_error("Accuracy", ((8, 10, 2), (8,)), match="label", field="axis", axis=1)


def test_params_from_caffe_text() -> None:
    p = params_from_text("Accuracy", "accuracy_param { top_k: 5 ignore_label: -1 }")
    assert (p.top_k, p.axis, p.ignore_label) == (5, 1, -1)


def test_lowering_top_k_with_ignore_and_per_class() -> None:
    import torch

    scores = rand(40, 6)
    labels = torch.randint(0, 6, (40,), generator=torch.Generator().manual_seed(3))
    labels[:5] = 2
    m, _ = lower("Accuracy", ((40, 6), (40,)), tops=2, top_k=2, ignore_label=4)
    acc, per_class = m(scores, labels.float())
    s, lab = np_(scores), labels.numpy()
    hits, counted = np.zeros(6), np.zeros(6)
    for row, y in zip(s, lab, strict=True):
        if y == 4:
            continue
        counted[y] += 1
        hits[y] += (row >= row[y]).sum() - 1 < 2
    assert float(acc) == pytest.approx(hits.sum() / counted.sum())
    close(per_class, np.where(counted > 0, hits / np.maximum(counted, 1), 0))
