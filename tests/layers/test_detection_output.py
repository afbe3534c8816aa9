"""DetectionOutput (SSD's Caffe, weiliu89/caffe, detection_output_layer.cpp and
bbox_util.cpp): shapes, every CHECK, and the kernel (decoding, per-class NMS, keep_top_k)
against a numpy transcription of Forward_cpu on small examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers._detection import CodeType, NMSParams

from . import detection_reference as ref
from .helpers import kind, lower, params_from_text, shape_error, shapes
from .roundtrip import round_trip

P, C = 12, 4  # priors, classes
LOC, CONF, PRIOR = (2, P * 4), (2, P * C), (1, 2, P * 4)


def _example(seed: int, loc_classes: int = 1, n: int = 2) -> tuple[np.ndarray, ...]:
    """Priors in three overlapping clusters (so NMS has work), small offsets, softmax
    scores without ties."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.25, 0.75, (3, 2))[rng.integers(0, 3, P)]
    centres += rng.normal(0, 0.03, (P, 2))
    half = rng.uniform(0.08, 0.2, (P, 2))
    boxes = np.concatenate([centres - half, centres + half], axis=1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], (P, 1))
    prior = np.stack([boxes.reshape(-1), var.reshape(-1)])[None]
    loc = rng.normal(0, 0.5, (n, P * loc_classes * 4))
    logits = rng.normal(0, 2, (n, P, C))
    conf = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return loc, conf.reshape(n, P * C), prior


def _run(loc: np.ndarray, conf: np.ndarray, prior: np.ndarray, **kw: object) -> np.ndarray:
    import torch

    nms = NMSParams(nms_threshold=float(kw.get("nms_threshold", 0.3)),  # type: ignore[arg-type]
                    top_k=kw.get("top_k"), eta=float(kw.get("eta", 1.0)))  # type: ignore[arg-type]
    layer_kw = {k: v for k, v in kw.items() if k not in ("nms_threshold", "top_k", "eta")}
    if "code_type" in layer_kw:
        layer_kw["code_type"] = CodeType[str(layer_kw["code_type"])]
    m, tops = lower("DetectionOutput", (loc.shape, conf.shape, prior.shape), num_classes=C,
                    nms_param=nms, **layer_kw)
    assert tops == ((1, 1, 1, 7),)  # Caffe's placeholder
    (y,) = m(torch.tensor(loc), torch.tensor(conf), torch.tensor(prior))
    return y.numpy()


def _reference(loc: np.ndarray, conf: np.ndarray, prior: np.ndarray, **kw: object) -> np.ndarray:
    kw = dict(kw)
    top_k = kw.pop("top_k", None)
    return ref.detection_output(loc, conf, prior, num_classes=C,
                                top_k=-1 if top_k is None else top_k, **kw)  # type: ignore[arg-type]


CASES = [
    {},
    {"nms_threshold": 0.45, "top_k": 5, "code_type": "CENTER_SIZE", "keep_top_k": 7,
     "confidence_threshold": 0.05},
    {"code_type": "CORNER_SIZE", "variance_encoded_in_target": True, "nms_threshold": 0.2},
    {"code_type": "CENTER_SIZE", "eta": 0.7, "nms_threshold": 0.9},
    {"share_location": False, "code_type": "CENTER_SIZE", "nms_threshold": 0.4},
    {"share_location": False, "background_label_id": -1, "keep_top_k": 4},
    {"background_label_id": 2, "keep_top_k": 0},
    {"confidence_threshold": 0.97},  # almost nothing passes
    {"confidence_threshold": 2.0},  # nothing: one row [i, -1, ...] per image
]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_against_reference(case: dict, seed: int) -> None:
    loc_classes = 1 if case.get("share_location", True) else C
    loc, conf, prior = _example(seed, loc_classes)
    got = _run(loc, conf, prior, **case)
    want = _reference(loc, conf, prior, **case)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_examples_exercise_nms() -> None:
    """Guard against a vacuous comparison: NMS drops boxes and keep_top_k trims."""
    loc, conf, prior = _example(0)
    everything = _reference(loc, conf, prior, nms_threshold=1.0)
    assert everything.shape[2] == 2 * P * (C - 1)
    assert _reference(loc, conf, prior).shape[2] < everything.shape[2] - 10
    assert _reference(loc, conf, prior, keep_top_k=7).shape[2] == 2 * 7
    assert _reference(loc, conf, prior, confidence_threshold=2.0)[0, 0, :, 1].tolist() == [
        -1, -1]


def test_shapes() -> None:
    assert shapes("DetectionOutput", (LOC, CONF, PRIOR), num_classes=C) == ((1, 1, 1, 7),)
    assert shapes("DetectionOutput", ((2, P * C * 4), CONF, PRIOR), num_classes=C,
                  share_location=False) == ((1, 1, 1, 7),)
    # SSD300: 8732 priors, 21 classes
    assert shapes("DetectionOutput", ((1, 34928), (1, 183372), (1, 2, 34928)),
                  num_classes=21) == ((1, 1, 1, 7),)


def test_checks() -> None:
    b = (LOC, CONF, PRIOR)
    shape_error("DetectionOutput", b, match="needs num_classes")
    shape_error("DetectionOutput", b, match="at least 1", field="num_classes", num_classes=0)
    shape_error("DetectionOutput", b, match="non negative", field="nms_param", num_classes=C,
                nms_param=NMSParams(nms_threshold=-0.1))
    shape_error("DetectionOutput", b, match="eta", field="nms_param", num_classes=C,
                nms_param=NMSParams(eta=1.5))
    shape_error("DetectionOutput", ((3, P * 4), CONF, PRIOR), match="same first dimension",
                num_classes=C)
    shape_error("DetectionOutput", ((2, P * 4 + 4), CONF, PRIOR), match="location",
                num_classes=C)
    shape_error("DetectionOutput", b, match="location", num_classes=C, share_location=False)
    shape_error("DetectionOutput", b, match="confidence", field="num_classes", num_classes=3)


def test_params_from_caffe_text() -> None:
    p = params_from_text("DetectionOutput", """detection_output_param {
        num_classes: 21 share_location: true background_label_id: 0
        nms_param { nms_threshold: 0.45 top_k: 400 }
        save_output_param { output_directory: "out" output_format: "VOC"
                            label_map_file: "labelmap_voc.prototxt" }
        code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.01 }""")
    assert p.num_classes == 21 and p.code_type is CodeType.CENTER_SIZE
    assert p.nms_param == NMSParams(nms_threshold=0.45, top_k=400)
    assert p.save_output_param.output_format == "VOC"
    assert (p.keep_top_k, p.confidence_threshold) == (200, 0.01)
    assert kind("DetectionOutput").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


SSD_DETECT = """input: "loc" input_shape { dim: 1 dim: 48 }
    input: "conf" input_shape { dim: 1 dim: 48 }
    input: "prior" input_shape { dim: 1 dim: 2 dim: 48 }
    layer { name: "detection_out" type: "DetectionOutput" top: "detection_out"
      bottom: "loc" bottom: "conf" bottom: "prior" include { phase: TEST }
      detection_output_param { num_classes: 4 share_location: true background_label_id: 0
        %s code_type: CENTER_SIZE keep_top_k: 200 confidence_threshold: 0.01 } }"""


def test_convert_both_ways(tmp_path: Path) -> None:
    round_trip(tmp_path, SSD_DETECT % "")


def test_convert_both_ways_with_nms_param(tmp_path: Path) -> None:
    round_trip(tmp_path, SSD_DETECT % "nms_param { nms_threshold: 0.45 top_k: 400 }")
