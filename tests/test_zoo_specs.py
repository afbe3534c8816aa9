"""specs/googlenet.net and specs/resnet50.net against the model-zoo prototxt they restate.

Each spec must be at most a quarter of the prototxt's lines and give every blob of the
prototxt, by name, the same shape, with the same parameter count, in both phases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.shapes import ShapeTable, infer_shapes
from tests.shared import ROOT, SHARED_CAFFE

ZOO = {
    # spec: (prototxt, parameters, batch of the prototxt)
    "googlenet.net": ("bvlc_googlenet__deploy.prototxt", 6_998_552, 10),
    "resnet50.net": ("resnet50__ResNet-50-deploy.prototxt", 25_557_096, 1),
}
CASES = [pytest.param(name, id=name.removesuffix(".net")) for name in ZOO]
PHASES = ("train", "test")


def spec_path(name: str) -> Path:
    return ROOT / "specs" / name


def prototxt(name: str) -> Path:
    p = SHARED_CAFFE / "prototxt" / ZOO[name][0]
    if not p.is_file():
        pytest.skip("shared caffe reference data not present")
    return p


def lines(path: Path) -> int:
    """Lines that are neither blank nor only a comment."""
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and not line.strip().startswith("#"))


def table(path: Path, phase: str, batch: int | None = None) -> ShapeTable:
    return infer_shapes(netdsl.load(path, phase), batch)


@pytest.mark.parametrize("name", CASES)
def test_a_quarter_of_the_prototxt(name: str) -> None:
    assert lines(spec_path(name)) * 4 <= lines(prototxt(name))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("phase", PHASES)
def test_every_prototxt_blob_has_its_shape(name: str, phase: str) -> None:
    want = table(prototxt(name), phase)
    got = table(spec_path(name), phase)
    assert got.batch == want.batch == ZOO[name][2]
    assert {b: got.blobs.get(b) for b in want.blobs} == dict(want.blobs)
    assert got.total_params == want.total_params == ZOO[name][1]


@pytest.mark.parametrize("name", CASES)
def test_same_layers_and_wiring(name: str) -> None:
    """Layer names, types, bottoms and tops are the zoo file's, in its order, so its
    trained weights (keyed by layer name) load into the spec as they are."""
    def wiring(path: Path) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
        return [(lay.name, lay.type, lay.bottoms, lay.tops)
                for lay in netdsl.load(path, "test").layers]

    assert wiring(spec_path(name)) == wiring(prototxt(name))


@pytest.mark.parametrize("name", CASES)
def test_parameter_count_at_any_batch(name: str) -> None:
    """Needs no shared data: the count the papers' nets have, at another batch too."""
    for batch in (None, 3):
        assert table(spec_path(name), "test", batch).total_params == ZOO[name][1]


def test_googlenet_inception_outputs() -> None:
    """Szegedy et al., Table 1: the inception modules' output depths and sizes."""
    t = table(spec_path("googlenet.net"), "test", 1)
    depth = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
             "5a": 832, "5b": 1024}
    for module, channels in depth.items():
        side = {"3": 28, "4": 14, "5": 7}[module[0]]
        assert t.blobs[f"inception_{module}/output"] == (1, channels, side, side)
    assert t.blobs["pool5/7x7_s1"] == (1, 1024, 1, 1)
    assert t.blobs["prob"] == (1, 1000)


def test_resnet50_stages() -> None:
    """He et al., Table 1: conv2_x .. conv5_x outputs, 3, 4, 6 and 3 blocks."""
    t = table(spec_path("resnet50.net"), "test", 1)
    for stage, (blocks, channels, side) in {2: (3, 256, 56), 3: (4, 512, 28),
                                            4: (6, 1024, 14), 5: (3, 2048, 7)}.items():
        last = "abcdef"[blocks - 1]
        assert t.blobs[f"res{stage}{last}"] == (1, channels, side, side)
        assert f"res{stage}{'abcdefg'[blocks]}" not in t.blobs
    kinds = [lay.type for lay in t.net.layers]
    assert kinds.count("Convolution") == 53 and kinds.count("BatchNorm") == 53
    assert kinds.count("Scale") == 53 and kinds.count("Eltwise") == 16
