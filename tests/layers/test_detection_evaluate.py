"""DetectionEvaluate (SSD's Caffe, weiliu89/caffe, detection_evaluate_layer.cpp): shapes,
every CHECK, and the kernel against a numpy transcription of Reshape and Forward_cpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.diagnostics import SpecError

from . import detection_reference as ref
from .helpers import kind, lower, params, params_from_text, shape_error, shapes
from .roundtrip import round_trip

C = 5

GT = np.array([  # [image, label, instance, xmin, ymin, xmax, ymax, difficult]
    [0, 1, 0, 0.10, 0.10, 0.40, 0.50, 0],
    [0, 1, 1, 0.50, 0.50, 0.90, 0.90, 0],
    [0, 3, 0, 0.20, 0.60, 0.45, 0.95, 1],   # difficult
    [1, 2, 0, 0.30, 0.20, 0.70, 0.80, 0],
    [1, 4, 0, 0.05, 0.05, 0.30, 0.30, 1],   # difficult
    [-1, 0, 0, 0, 0, 0, 0, 0],              # the end: GetGroundTruth stops here
    [2, 1, 0, 0.1, 0.1, 0.9, 0.9, 0],       # never read
]).reshape(1, 1, -1, 8)


def _detections(seed: int) -> np.ndarray:
    """Boxes jittered around the ground truth (several per box), stray boxes, labels
    without ground truth, an image without any, and a "nothing found" row."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in GT[0, 0, :5]:
        for _ in range(3):
            box = g[3:7] + rng.normal(0, 0.06, 4)
            rows.append([g[0], g[1], rng.uniform(0.01, 1), *box])
    for image, label in ((0, 2), (1, 1), (3, 4), (0, 1)):
        lo = rng.uniform(0, 0.6, 2)
        rows.append([image, label, rng.uniform(0.01, 1), *lo, *(lo + 0.3)])
    rows.append([2, -1, -1, -1, -1, -1, -1])  # DetectionOutput found nothing in image 2
    rows = [rows[i] for i in rng.permutation(len(rows))]
    return np.array(rows, dtype=np.float64).reshape(1, 1, -1, 7)


def _run(det: np.ndarray, **kw: object) -> np.ndarray:
    import torch

    m, tops = lower("DetectionEvaluate", (det.shape, GT.shape), num_classes=C, **kw)
    (y,) = m(torch.tensor(det), torch.tensor(GT))
    assert tops == ((1, 1, (C - (kw.get("background_label_id", 0) != -1)) + det.shape[2], 5),)
    return y.numpy()


@pytest.mark.parametrize("kw", [{}, {"evaluate_difficult_gt": False},
                                {"overlap_threshold": 0.3}, {"background_label_id": -1},
                                {"overlap_threshold": 0.7, "evaluate_difficult_gt": False}],
                         ids=range(5))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_against_reference(kw: dict, seed: int) -> None:
    det = _detections(seed)
    if kw.get("background_label_id") == -1:  # Caffe CHECKs that no row has the background
        det = det[:, :, det[0, 0, :, 1] != -1]
    got = _run(det, **kw)
    want = ref.detection_evaluate(det, GT, num_classes=C, **kw)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_the_example_has_every_outcome() -> None:
    want = ref.detection_evaluate(_detections(0), GT, num_classes=C,
                                  evaluate_difficult_gt=False)[0, 0]
    rows = want[C - 1:]
    outcomes = {tuple(r[3:]) for r in rows}
    assert {(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)} <= outcomes
    assert want[:C - 1, 2].tolist() == [2, 1, 0, 0]  # boxes per class, difficult not counted


def test_skipped_rows_stay_zero() -> None:
    """Reshape counts rows whose label is not -1; Forward skips image -1: zeros at the end."""
    det = np.array([[0, 1, 0.9, 0.1, 0.1, 0.4, 0.5], [-1, 2, 0.5, 0, 0, 1, 1]]).reshape(
        1, 1, 2, 7)
    got = _run(det)
    np.testing.assert_array_equal(got[0, 0, -1], 0)
    np.testing.assert_array_equal(got, ref.detection_evaluate(det, GT, num_classes=C))


def test_shapes() -> None:
    assert shapes("DetectionEvaluate", ((1, 1, 1, 7), (1, 1, 1, 8)), num_classes=21) == (
        (1, 1, 21, 5),)
    assert shapes("DetectionEvaluate", ((1, 1, 200, 7), (1, 1, 9, 8)), num_classes=21,
                  background_label_id=-1) == ((1, 1, 221, 5),)


def test_checks() -> None:
    b = ((1, 1, 1, 7), (1, 1, 1, 8))
    shape_error("DetectionEvaluate", b, match="needs num_classes")
    shape_error("DetectionEvaluate", b, match="positive", field="overlap_threshold",
                num_classes=3, overlap_threshold=0.0)
    shape_error("DetectionEvaluate", ((2, 1, 1, 7), b[1]), match="detections", num_classes=3)
    shape_error("DetectionEvaluate", (b[0], (1, 1, 4, 7)), match="ground truth", num_classes=3)


def test_lowering_refuses_name_size_file() -> None:
    p = params("DetectionEvaluate", num_classes=3, name_size_file="test_name_size.txt")
    with pytest.raises(SpecError, match="name_size_file"):
        kind("DetectionEvaluate").lower(p, ((1, 1, 1, 7), (1, 1, 1, 8)), ((1, 1, 3, 5),))


def test_params_from_caffe_text() -> None:
    p = params_from_text("DetectionEvaluate", """detection_evaluate_param {
        num_classes: 21 background_label_id: 0 overlap_threshold: 0.5
        evaluate_difficult_gt: false name_size_file: "data/VOC0712/test_name_size.txt" }""")
    assert (p.num_classes, p.evaluate_difficult_gt) == (21, False)
    assert kind("DetectionEvaluate").is_loss is False
    assert kind("DetectionEvaluate").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


def test_convert_both_ways(tmp_path: Path) -> None:
    round_trip(tmp_path, """input: "det" input_shape { dim: 1 dim: 1 dim: 1 dim: 7 }
        input: "label" input_shape { dim: 1 dim: 1 dim: 1 dim: 8 }
        layer { name: "detection_eval" type: "DetectionEvaluate" bottom: "det"
          bottom: "label" top: "detection_eval" include { phase: TEST }
          detection_evaluate_param { num_classes: 21 background_label_id: 0
            overlap_threshold: 0.5 evaluate_difficult_gt: false } }""")
