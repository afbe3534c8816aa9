"""The shipped variants: each a few lines on top of specs/alexnet.net."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.shapes import infer_shapes
from tests.shared import ROOT

SPECS = ROOT / "specs"
LIMITS = {"alexnet_bn.net": 10, "alexnet_1gpu.net": 10, "caffenet.net": 15,
          "alexnet_small.net": 15}


def code_lines(path: Path) -> int:
    n = 0
    for line in path.read_text().splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            n += 1
    return n


@pytest.mark.parametrize("name, limit", sorted(LIMITS.items()))
def test_variant_is_a_few_lines(name: str, limit: int) -> None:
    path = SPECS / name
    assert code_lines(path) <= limit
    assert 'import "alexnet.net"' in path.read_text()
    for phase in ("train", "test"):
        net = netdsl.load(path, phase)
        net.check()
        assert infer_shapes(net).total_params > 0


def test_alexnet_bn_replaces_lrn() -> None:
    net = netdsl.load(SPECS / "alexnet_bn.net")
    assert net.name == "AlexNet-BN"
    assert net.layer("norm1").type == "BatchNorm"
    assert net.layer("norm2").type == "BatchNorm"
    assert net.layer("norm1").bottoms == ("conv1",)
    assert not [lay for lay in net.layers if lay.type == "LRN"]


def test_alexnet_1gpu_is_one_device_same_params() -> None:
    net = netdsl.load(SPECS / "alexnet_1gpu.net")
    assert net.devices == ("gpu:0",)
    assert {lay.devices for lay in net.layers} == {("gpu:0",)}
    assert infer_shapes(net).total_params == 60_965_224


def test_caffenet_matches_bvlc_deploy(shared_caffe: Path) -> None:
    ours = infer_shapes(netdsl.load(SPECS / "caffenet.net", "test"), batch=10)
    ref_net = netdsl.load(shared_caffe / "prototxt" / "bvlc_reference_caffenet__deploy.prototxt",
                          "test")
    ref = infer_shapes(ref_net)
    assert ours.total_params == ref.total_params == 60_965_224
    for blob, shape in ref.blobs.items():
        if blob != "prob":
            assert ours.blobs[blob] == shape, blob
    order = [lay.name for lay in ref_net.layers if lay.name != "prob"]
    ours_order = [lay.name for lay in ours.net.layers if lay.name in order]
    assert ours_order == order  # pool before norm, as in CaffeNet


def test_alexnet_small_for_32x32() -> None:
    net = netdsl.load(SPECS / "alexnet_small.net", "test")
    t = infer_shapes(net, batch=1)
    assert t.blobs["data"] == (1, 1, 32, 32)
    assert t.blobs["conv1"] == (1, 24, 32, 32)
    assert t.blobs["pool5"] == (1, 64, 4, 4)
    assert t.blobs["fc8"] == (1, 10)


def test_set_overrides_a_variable() -> None:
    net = netdsl.load(SPECS / "alexnet_small.net", "test", {"width": "0.5"})
    assert infer_shapes(net, batch=1).blobs["conv1"] == (1, 48, 32, 32)
