"""MultiBoxLoss (SSD's Caffe, weiliu89/caffe, multibox_loss_layer.cpp and bbox_util.cpp):
shapes, every CHECK, what lowering refuses, and the loss and its gradients against a
numpy transcription of Forward_cpu and Backward_cpu on small examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netdsl.diagnostics import SpecError
from netdsl.layers._detection import CodeType, NMSParams
from netdsl.layers.multibox_loss import (
    ConfLossType,
    LocLossType,
    MatchType,
    MiningType,
    normalization,
)
from netdsl.layers.softmax_with_loss import Normalization

from . import detection_reference as ref
from .helpers import kind, lower, params, params_from_text, shape_error, shapes
from .roundtrip import round_trip

N, C = 3, 4


def _priors(rng: np.random.Generator) -> np.ndarray:
    """A 3 x 4 grid of two sizes, the larger crossing the border at the edges: 24 priors."""
    boxes = []
    for h in range(3):
        for w in range(4):
            cx, cy = (w + 0.5) / 4, (h + 0.5) / 3
            for half in (0.12, 0.22):
                hw, hh = half * rng.uniform(0.9, 1.1), half * rng.uniform(0.9, 1.1)
                boxes.append([cx - hw, cy - hh, cx + hw, cy + hh])
    b = np.array(boxes)
    var = np.tile([0.1, 0.1, 0.2, 0.2], (len(b), 1))
    return np.stack([b.reshape(-1), var.reshape(-1)])[None]


GT = np.array([  # [item, label, instance, xmin, ymin, xmax, ymax, difficult]
    [0, 1, 0, 0.10, 0.12, 0.45, 0.40, 0],
    [0, 3, 1, 0.40, 0.30, 0.95, 0.90, 0],
    [1, 2, 0, 0.30, 0.35, 0.62, 0.70, 1],   # difficult
    [-1, 0, 0, 0, 0, 0, 0, 0],              # padding: skipped
    [1, 1, 1, 0.05, 0.55, 0.30, 0.98, 0],
    [0, 2, 2, 0.62, 0.05, 0.90, 0.28, 0],
]).reshape(1, 1, -1, 8)  # image 2 has no boxes


def _example(seed: int, loc_classes: int = 1, c: int = C) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    prior = _priors(rng)
    p = prior.shape[2] // 4
    loc = rng.normal(0, 0.8, (N, p * loc_classes * 4))
    conf = rng.normal(0, 1.5, (N, p * c))
    return loc, conf, prior


CASES: list[dict[str, Any]] = [
    {},
    {"code_type": "CENTER_SIZE"},  # SSD300's training setting
    {"match_type": "BIPARTITE", "mining": False},
    {"use_difficult_gt": False, "neg_pos_ratio": 1.5, "neg_overlap": 0.3},
    {"loc_loss_type": "L2", "conf_loss_type": "LOGISTIC"},
    {"conf_loss_type": "LOGISTIC", "mining": False, "background_label_id": 0},
    {"share_location": False, "mining": False, "code_type": "CENTER_SIZE"},
    {"use_prior_for_matching": False, "code_type": "CENTER_SIZE", "overlap_threshold": 0.3},
    {"encode_variance_in_target": True, "code_type": "CORNER_SIZE"},
    {"bp_inside": True, "code_type": "CORNER"},
    {"bp_inside": True, "use_prior_for_matching": False, "code_type": "CORNER_SIZE"},
    {"ignore_cross_boundary_bbox": True, "overlap_threshold": 0.3},
    # (with mining, Caffe's ComputeConfLoss CHECKs each box label < num_classes = 2)
    {"map_object_to_agnostic": True, "num_classes": 2, "mining": False},
    {"normalization": "FULL", "loc_weight": 2.5},
    {"normalization": "BATCH_SIZE", "mining": False},
    {"normalization": "NONE", "overlap_threshold": 0.7},
]


def _layer_params(case: dict[str, Any]) -> dict[str, Any]:
    """The layer's fields for a case written with the kernel's keywords."""
    enums = {"code_type": CodeType, "match_type": MatchType, "loc_loss_type": LocLossType,
             "conf_loss_type": ConfLossType, "normalization": Normalization}
    out: dict[str, Any] = {"num_classes": C}
    for k, v in case.items():
        if k == "mining":
            out["mining_type"] = MiningType.MAX_NEGATIVE if v else MiningType.NONE
        else:
            out[k] = enums[k][v] if k in enums else v
    return out


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradients_against_reference(case: dict[str, Any], seed: int) -> None:
    import torch

    c = case.get("num_classes", C)
    loc_classes = 1 if case.get("share_location", True) else c
    loc, conf, prior = _example(seed, loc_classes, c)
    m, tops = lower("MultiBoxLoss", (loc.shape, conf.shape, prior.shape, GT.shape),
                    **_layer_params(case))
    assert tops == ((),)
    tl = torch.tensor(loc, requires_grad=True)
    tc = torch.tensor(conf, requires_grad=True)
    (loss,) = m(tl, tc, torch.tensor(prior), torch.tensor(GT))
    loss.backward()
    want, dloc, dconf = ref.multibox_loss(loc, conf, prior, GT, **{"num_classes": C, **case})
    assert loss.dim() == 0
    assert float(loss.detach()) == pytest.approx(want, rel=1e-11, abs=1e-12)
    np.testing.assert_allclose(tl.grad.numpy(), dloc, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tc.grad.numpy(), dconf, rtol=1e-10, atol=1e-12)


def test_the_example_matches_and_mines() -> None:
    """Guard against a vacuous comparison: some priors match, mining keeps some negatives."""
    import torch

    from netdsl.kernels.multibox import match_priors

    _, _, prior = _example(0)
    boxes = torch.tensor(prior[0, 0].reshape(-1, 4))
    rows = torch.tensor(GT.reshape(-1, 8))
    valid = rows[:, 0].long()[None, :] == torch.arange(N)[:, None]
    match, best = match_priors(boxes.expand(N, -1, 4), rows[:, 3:7], valid, "PER_PREDICTION",
                               0.5, False)
    per_image = (match > -1).sum(1).tolist()
    assert per_image[0] >= 3 and per_image[1] >= 2 and per_image[2] == 0
    bipartite, _ = match_priors(boxes.expand(N, -1, 4), rows[:, 3:7], valid, "BIPARTITE",
                                0.5, False)
    assert (bipartite > -1).sum(1).tolist() == [3, 2, 0]  # one prior per box
    assert ((best < 0.5) & (match == -1)).sum() > 10  # negatives to mine from


def test_shapes() -> None:
    b = ((N, 24 * 4), (N, 24 * C), (1, 2, 24 * 4), (1, 1, 5, 8))
    assert shapes("MultiBoxLoss", b, num_classes=C) == ((),)
    assert shapes("MultiBoxLoss", ((N, 24 * C * 4), b[1], b[2], b[3]), num_classes=C,
                  share_location=False, mining_type=MiningType.NONE) == ((),)
    assert kind("MultiBoxLoss").is_loss


def test_checks() -> None:
    b = ((N, 24 * 4), (N, 24 * C), (1, 2, 24 * 4), (1, 1, 5, 8))
    shape_error("MultiBoxLoss", b, match="needs num_classes")
    shape_error("MultiBoxLoss", b, match="less than 1", field="num_classes", num_classes=0)
    shape_error("MultiBoxLoss", b, match="contradicts", field="do_neg_mining", num_classes=C,
                do_neg_mining=False)
    shape_error("MultiBoxLoss", ((N, 24 * C * 4), b[1], b[2], b[3]), match="share_location",
                field="share_location", num_classes=C, share_location=False)
    shape_error("MultiBoxLoss", b, match=r"within \[0, 4\)", field="background_label_id",
                num_classes=C, background_label_id=4)
    shape_error("MultiBoxLoss", b, match="unsigned", field="background_label_id",
                num_classes=C, background_label_id=-1)
    shape_error("MultiBoxLoss", b, match="num_classes: 2", field="map_object_to_agnostic",
                num_classes=C, map_object_to_agnostic=True)
    shape_error("MultiBoxLoss", ((N + 1, 24 * 4), *b[1:]), match="same first dimension",
                num_classes=C)
    shape_error("MultiBoxLoss", b, match="confidence", field="num_classes", num_classes=C + 1)
    shape_error("MultiBoxLoss", ((N, 23 * 4), *b[1:]), match="location", num_classes=C)


@pytest.mark.parametrize("kw", [
    {"mining_type": MiningType.HARD_EXAMPLE},
    {"nms_param": NMSParams(nms_threshold=0.7)},
    {"use_prior_for_matching": False, "share_location": False,
     "mining_type": MiningType.NONE},
])
def test_lowering_refuses_what_it_does_not_do(kw: dict[str, Any]) -> None:
    loc_classes = 1 if kw.get("share_location", True) else C
    b = ((N, 24 * 4 * loc_classes), (N, 24 * C), (1, 2, 24 * 4), (1, 1, 5, 8))
    p = params("MultiBoxLoss", num_classes=C, **kw)
    assert kind("MultiBoxLoss").shape(p, b, _ctx()) == ((),)  # shapes work
    with pytest.raises(SpecError, match="cannot train with"):
        kind("MultiBoxLoss").lower(p, b, ((),))


def _ctx() -> Any:
    from .helpers import make_ctx

    return make_ctx("MultiBoxLoss")


def test_nms_param_without_threshold_is_fine() -> None:
    b = ((N, 24 * 4), (N, 24 * C), (1, 2, 24 * 4), (1, 1, 5, 8))
    kind("MultiBoxLoss").lower(params("MultiBoxLoss", num_classes=C,
                                      nms_param=NMSParams(nms_threshold=0.0)), b, ((),))


def test_params_from_caffe_text() -> None:
    p = params_from_text("MultiBoxLoss", """
        multibox_loss_param { loc_loss_type: SMOOTH_L1 conf_loss_type: SOFTMAX loc_weight: 1.0
          num_classes: 21 share_location: true match_type: PER_PREDICTION
          overlap_threshold: 0.5 use_prior_for_matching: true background_label_id: 0
          use_difficult_gt: true neg_pos_ratio: 3.0 neg_overlap: 0.5 code_type: CENTER_SIZE
          ignore_cross_boundary_bbox: false mining_type: MAX_NEGATIVE }
        loss_param { normalization: VALID }""")
    assert p.num_classes == 21 and p.code_type is CodeType.CENTER_SIZE
    assert p.mining_type is MiningType.MAX_NEGATIVE and p.normalization is Normalization.VALID
    assert kind("MultiBoxLoss").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


def test_normalization_resolution() -> None:
    def norm(**kw: Any) -> Normalization:
        return normalization(params("MultiBoxLoss", **kw))

    assert norm() is Normalization.VALID
    assert norm(normalize=False) is Normalization.BATCH_SIZE
    assert norm(normalize=True) is Normalization.VALID
    assert norm(normalization=Normalization.FULL, normalize=False) is Normalization.FULL


SSD_LOSS = """input: "loc" input_shape { dim: 2 dim: 96 }
    input: "conf" input_shape { dim: 2 dim: 96 }
    input: "prior" input_shape { dim: 1 dim: 2 dim: 96 }
    input: "label" input_shape { dim: 1 dim: 1 dim: 3 dim: 8 }
    layer { name: "mbox_loss" type: "MultiBoxLoss" top: "mbox_loss"
      bottom: "loc" bottom: "conf" bottom: "prior" bottom: "label"
      include { phase: TRAIN }
      propagate_down: true propagate_down: true propagate_down: false propagate_down: false
      loss_param { normalization: VALID }
      multibox_loss_param { loc_loss_type: SMOOTH_L1 conf_loss_type: SOFTMAX loc_weight: 1.0
        num_classes: 4 share_location: true match_type: PER_PREDICTION overlap_threshold: 0.5
        use_prior_for_matching: true background_label_id: 0 use_difficult_gt: true
        neg_pos_ratio: 3.0 neg_overlap: 0.5 code_type: CENTER_SIZE
        ignore_cross_boundary_bbox: false mining_type: MAX_NEGATIVE %s } }"""


def test_convert_both_ways(tmp_path: Path) -> None:
    round_trip(tmp_path, SSD_LOSS % "")


def test_convert_both_ways_with_nms_param(tmp_path: Path) -> None:
    round_trip(tmp_path, SSD_LOSS % "nms_param { nms_threshold: 0 }")
