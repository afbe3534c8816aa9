"""netdsl.runtime.evaluate: ``netdsl test`` (top-1/top-5, 10-crop) and ``netdsl time``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.diagnostics import DataError, render
from netdsl.runtime import evaluate as E
from netdsl.runtime.train import train
from netdsl.weights import save_weights
from tests.runtime.helpers import write_spec

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = {"data.resize": "[10]", "data.crop": "8"}  # 8x8 digits scaled to 10x10, cropped to 8
#: A net with no loss, ending in a Softmax.
DEPLOY = ('name: "d"\ninput { name: "data" shape: [1, 8, 8] }\n'
          'layer { name: "fc" type: InnerProduct bottom: "data" num_output: 3 }\n'
          'layer { name: "prob" type: Softmax bottom: "fc" }\n')


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The tiny spec and its weights after 12 iterations."""
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.net")
    result = train(spec, fmt="none")
    return spec, Path(result["snapshot"])


def test_test_scores_every_image_once(trained: tuple[Path, Path]) -> None:
    spec, weights = trained
    out = io.StringIO()
    r = E.test(spec, weights=str(weights), fmt="json", out=out)
    assert json.loads(out.getvalue()) == r
    assert set(r) == {"loss", "outputs", "top1", "top5", "images", "batches", "crops",
                      "mirror", "seconds"}
    assert set(r["outputs"]) == {"loss", "accuracy"}
    assert (r["images"], r["crops"], r["batches"]) == (360, 1, 23)
    # Our top-1 from the scores equals the net's Accuracy layer over the same images, our
    # cross-entropy its SoftmaxWithLoss.
    assert r["top1"] == pytest.approx(r["outputs"]["accuracy"])
    assert r["loss"] == pytest.approx(r["outputs"]["loss"], rel=1e-6)
    assert 0 <= r["top1"] <= r["top5"] <= 1
    # Batches of 7 do not divide 360: the wrapped last batch must not count twice.
    r7 = E.test(spec, weights=str(weights), fmt="none", overrides={"data.batch_size": "7"})
    assert r7["top1"] == pytest.approx(r["top1"]) and r7["loss"] == pytest.approx(r["loss"])


def test_ten_crop(trained: tuple[Path, Path]) -> None:
    spec, weights = trained
    r1 = E.test(spec, weights=str(weights), fmt="none", overrides=CROP)
    r10 = E.test(spec, weights=str(weights), fmt="none", overrides=CROP, crops=10)
    assert set(r10) == set(r1)
    assert (r10["images"], r10["crops"]) == (360, 10)
    assert 0 <= r10["top1"] <= r10["top5"] <= 1
    assert r10["top1"] != r1["top1"]  # other predictions (averaged over 10 views)
    with pytest.raises(DataError) as e:
        E.test(spec, weights=str(weights), fmt="none", crops=10)
    assert "needs the data to be cropped" in e.value.message


def test_rich_output(trained: tuple[Path, Path]) -> None:
    spec, weights = trained
    out = io.StringIO()
    E.test(spec, weights=str(weights), fmt="rich", out=out)
    text = out.getvalue()
    assert "360 images" in text and "top1" in text and "%" not in text


def test_weights_must_cover_the_net(trained: tuple[Path, Path]) -> None:
    spec, _ = trained
    partial = spec.parent / "partial.safetensors"
    save_weights(partial, {"fc1.weight": torch.zeros(16, 64), "fc1.bias": torch.zeros(16)})
    with pytest.raises(DataError) as e:
        E.test(spec, weights=str(partial), fmt="none")
    text = render(e.value)
    assert "missing 'fc2.weight'" in text and "partial.safetensors" in text
    state = spec.parent / "snaps" / "tiny_iter_12.solverstate.safetensors"
    with pytest.raises(DataError) as e:
        E.test(spec, weights=str(state), fmt="none")
    assert "solver state, not weights" in e.value.message


def test_prediction_blob(tmp_path: Path) -> None:
    p = tmp_path / "deploy.net"
    p.write_text(DEPLOY)
    assert E.prediction_blob(netdsl.load(p, "test")) == ("prob", True)
    spec = write_spec(tmp_path / "tiny.net")
    assert E.prediction_blob(netdsl.load(spec, "test")) == ("fc2", False)


def test_time_per_layer(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "tiny.net")
    out = io.StringIO()
    r = E.time(spec, iterations=3, batch=4, fmt="json", out=out)
    assert json.loads(out.getvalue())["layers"] == r["layers"]
    assert set(r) == {"net", "phase", "batch", "iterations", "device", "layers", "forward_ms",
                      "backward_ms", "forward_backward_ms", "total_ms"}
    assert (r["batch"], r["iterations"], r["phase"]) == (4, 3, "train")
    assert [lay["name"] for lay in r["layers"]] == ["fc1", "relu1", "drop1", "fc2", "loss"]
    assert [lay["type"] for lay in r["layers"]][-1] == "SoftmaxWithLoss"
    for lay in r["layers"]:
        assert set(lay) == {"name", "type", "forward_ms", "backward_ms"}
        assert lay["forward_ms"] > 0 and lay["backward_ms"] > 0
    assert r["forward_backward_ms"] == pytest.approx(r["forward_ms"] + r["backward_ms"])
    assert sum(lay["forward_ms"] for lay in r["layers"]) <= r["forward_ms"] * 1.01
    out = io.StringIO()
    E.time(spec, iterations=1, fmt="rich", out=out)  # batch from the data section: 16
    text = out.getvalue()
    assert "batch 16" in text and "Average Forward pass" in text and "relu1" in text


def test_time_a_net_without_loss(tmp_path: Path) -> None:
    p = tmp_path / "deploy.net"
    p.write_text(DEPLOY)
    r = E.time(p, iterations=2, fmt="none")
    assert r["batch"] == 1 and all(lay["backward_ms"] > 0 for lay in r["layers"])
