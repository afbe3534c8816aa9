"""specs/ssd300.net against the SSD paper and the released models.

Outside facts: SSD300 (Liu et al. 2016) puts 38x38x4 + 19x19x6 + 10x10x6 + 5x5x6 +
3x3x4 + 1x1x4 = 8,732 default boxes on conv4_3, fc7, conv6_2 ... conv9_2 of a 300x300
image; Caffe's VOC model (21 classes) has 26,285,486 parameters (OpenVINO's model card
for the Caffe ssd300: 26.285 M) and torchvision's ssd300_vgg16, the same network with
91 COCO classes, 35,641,826 (its COCO_V1 weights' num_params).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import netdsl
from netdsl.convert import net_to_prototxt, prototxt_to_net
from netdsl.shapes import infer_shapes
from tests.shared import ROOT

SSD = ROOT / "specs" / "ssd300.net"
NARROW = {"width": "0.125"}
SOURCES = {  # source map: (side, priors per cell)
    "conv4_3_norm": (38, 4), "fc7": (19, 6), "conv6_2": (10, 6), "conv7_2": (5, 6),
    "conv8_2": (3, 4), "conv9_2": (1, 4),
}


def _table(phase: str, overrides: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return infer_shapes(netdsl.load(SSD, phase, overrides))


@pytest.mark.parametrize("overrides", [None, NARROW], ids=["full", "narrow"])
@pytest.mark.parametrize("phase", ["train", "test"])
def test_8732_priors(phase: str, overrides: dict[str, str] | None) -> None:
    blobs = _table(phase, overrides).blobs
    for src, (side, priors) in SOURCES.items():
        assert blobs[src][2:] == (side, side)
        assert blobs[f"{src}_mbox_priorbox"] == (1, 2, side * side * priors * 4)
    assert sum(s * s * p for s, p in SOURCES.values()) == 8732
    assert blobs["mbox_priorbox"] == (1, 2, 8732 * 4)
    n = 32 if phase == "train" else 1
    assert blobs["mbox_loc"] == (n, 8732 * 4)
    assert blobs["mbox_conf"] == (n, 8732 * 21)


def test_heads_and_outputs() -> None:
    train, test = _table("train"), _table("test")
    assert train.blobs["data"] == (32, 3, 300, 300) and train.blobs["label"] == (1, 1, 1, 8)
    assert train.blobs["mbox_loss"] == ()
    assert test.blobs["mbox_conf_softmax"] == (1, 8732, 21)
    assert test.blobs["detection_out"] == (1, 1, 1, 7)  # Caffe's placeholder row
    assert train.blobs["fc7_mbox_loc"] == (32, 24, 19, 19)
    assert train.blobs["fc7_mbox_conf_perm"] == (32, 19, 19, 126)


def test_parameter_counts() -> None:
    assert _table("test").total_params == 26_285_486
    assert _table("test", {"classes": "91"}).total_params == 35_641_826
    assert _table("train").total_params == _table("test").total_params
    assert _table("test").of("conv4_3_norm").blobs == {"scale": (512,)}


def test_convert_to_prototxt_and_back(tmp_path: Path) -> None:
    proto = tmp_path / "ssd300.prototxt"
    proto.write_text(net_to_prototxt(SSD))
    for phase in ("train", "test"):
        assert infer_shapes(netdsl.load(proto, phase)).blobs == _table(phase).blobs
    text = proto.read_text()
    assert "prior_box_param" in text and "nms_param { nms_threshold: 0.45 top_k: 400 }" in text


def test_convert_prototxt_to_net(tmp_path: Path) -> None:
    proto = tmp_path / "ssd300.prototxt"
    proto.write_text(net_to_prototxt(SSD))
    net = tmp_path / "ssd300.net"
    net.write_text(prototxt_to_net(proto))
    for phase in ("train", "test"):
        assert infer_shapes(netdsl.load(net, phase)).blobs == _table(phase).blobs


def _label() -> np.ndarray:
    """Two images' boxes: [image, label, instance, xmin, ymin, xmax, ymax, difficult]."""
    return np.array([[0, 12, 0, 0.1, 0.2, 0.5, 0.9, 0], [0, 15, 1, 0.55, 0.1, 0.95, 0.6, 0],
                     [1, 7, 0, 0.3, 0.3, 0.7, 0.7, 0]], dtype=np.float32).reshape(1, 1, 3, 8)


def test_narrow_ssd_trains_and_detects_on_the_cpu() -> None:
    import torch

    train = netdsl.compile(netdsl.load(SSD, "train", NARROW), devices="cpu", batch=2, seed=0)
    images = torch.randn(2, 3, 300, 300)
    out = train(data=images, label=torch.from_numpy(_label()))
    loss = out["mbox_loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    grads = [p.grad for p in train.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    test = netdsl.compile(netdsl.load(SSD, "test", NARROW), devices="cpu", seed=0)
    with torch.no_grad():
        det = test(data=images[:1])["detection_out"]
    assert det.dim() == 4 and det.shape[:2] == (1, 1) and det.shape[3] == 7
    assert 1 <= det.shape[2] <= 200  # keep_top_k (or one "nothing found" row)
    rows = det[0, 0]
    if rows[0, 1] >= 0:
        assert ((rows[:, 1] >= 1) & (rows[:, 1] < 21)).all()
        assert (rows[:, 2] > 0.01).all()
