"""``netdsl test``: --iterations, testing at the fillers, one key set and one number format
for 1 and 10 crops, 10-crop mirrors as the net was trained, NaN scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from netdsl.cli import main
from netdsl.runtime import evaluate as E
from netdsl.runtime.train import Trainer, train
from netdsl.weights import load_weights, save_weights
from tests.runtime.helpers import write_spec

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = {"data.resize": "[10]", "data.crop": "8"}  # 8x8 digits scaled to 10x10, cropped to 8
KEYS = {"top1", "top5", "loss", "images", "batches", "crops", "mirror", "seconds", "outputs"}


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The tiny spec and its weights after 12 iterations."""
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.net")
    result = train(spec, fmt="none")
    return spec, Path(result["snapshot"])


ERR: list[str] = []  # the last command's stderr


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["test", *argv, "--format", "json", "--devices", "cpu", "--workers", "0"]) == 0
    captured = capsys.readouterr()
    ERR[:] = [captured.err]
    out: dict[str, Any] = json.loads(captured.out.strip().splitlines()[-1])
    return out


def test_iterations_counts_batches(trained: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--iterations N runs N batches; each pass over the 360 images counts each once."""
    spec, weights = trained
    r = _cli_json(capsys, str(spec), "--weights", str(weights), "--iterations", "3")
    assert (r["batches"], r["images"]) == (3, 3 * 16)
    whole = E.test(spec, weights=str(weights), fmt="none")
    assert (whole["batches"], whole["images"]) == (23, 360)  # default: one pass
    # 30 batches: a whole pass (22 full and a last one of 8), then 7 more full ones
    more = E.test(spec, weights=str(weights), fmt="none", iterations=30)
    assert (more["batches"], more["images"]) == (30, 360 + 7 * 16)


def test_without_weights_tests_the_fillers(trained: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """No --weights: the fillers' weights, seeded as `train` starts (its iteration-0
    snapshot holds the same weights)."""
    spec, _ = trained
    trainer = Trainer(spec, overrides={"solver.snapshot_prefix": "start/tiny"})
    start = str(trainer.snapshot())
    trainer.feeder.close()
    at_start = E.test(spec, weights=start, fmt="none")
    r = _cli_json(capsys, str(spec))
    assert "no --weights: testing the fillers' initial weights" in ERR[0]
    assert r["top1"] == pytest.approx(at_start["top1"])
    assert r["loss"] == pytest.approx(at_start["loss"])
    assert start.endswith("_iter_0.safetensors")


def test_same_keys_for_one_and_ten_crops(trained: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec, weights = trained
    crop = [a for k, v in CROP.items() for a in ("--set", f"{k}={v}")]
    r1 = _cli_json(capsys, str(spec), "--weights", str(weights), *crop, "--crops", "1")
    r10 = _cli_json(capsys, str(spec), "--weights", str(weights), *crop, "--crops", "10")
    assert set(r1) == set(r10) == KEYS
    assert set(r1["outputs"]) == set(r10["outputs"]) == {"loss", "accuracy"}
    assert (r1["crops"], r10["crops"]) == (1, 10)
    assert math.isfinite(r10["loss"]) and r10["loss"] > 0
    assert r10["top1"] != r1["top1"]


def test_one_number_format(trained: tuple[Path, Path],
                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every rate is a fraction, in JSON and in the table (no percent)."""
    spec, weights = trained
    r = _cli_json(capsys, str(spec), "--weights", str(weights))
    for v in (r["top1"], r["top5"], *r["outputs"].values()):
        assert 0 <= v <= 3  # fractions (and a loss), never percents
    assert 0 <= r["top1"] <= r["top5"] <= 1
    assert main(["test", str(spec), "--weights", str(weights), "--devices", "cpu",
                 "--workers", "0"]) == 0
    text = capsys.readouterr().out
    assert "%" not in text
    assert f"{r['top1']:.4f}" in text and f"{r['outputs']['accuracy']:.4f}" in text


@pytest.mark.parametrize(("mirror", "flag", "views"), [
    ("true", None, 10), ("false", None, 5), ("false", True, 10), ("true", False, 5)])
def test_ten_crop_mirrors_as_trained(trained: tuple[Path, Path],
                                     monkeypatch: pytest.MonkeyPatch, mirror: str,
                                     flag: bool | None, views: int) -> None:
    """The mirrored views are in only when the TRAIN data is mirrored, or --mirror."""
    spec, weights = trained
    seen: list[tuple[int, int]] = []
    average = E.average_crops  # type: ignore[attr-defined]  # imported there

    def spy(x: torch.Tensor, crops: int) -> torch.Tensor:
        seen.append((int(x.shape[0]), crops))
        return average(x, crops)

    monkeypatch.setattr(E, "average_crops", spy)
    over = {**CROP, "data.mirror": mirror}
    r = E.test(spec, weights=str(weights), fmt="none", overrides=over, crops=10, mirror=flag)
    assert r["mirror"] is (views == 10) and r["crops"] == 10
    assert seen[0] == (16 * views, views)  # the net saw 16 images x views
    assert sum(n for n, _ in seen) == 360 * views


def test_ten_crop_views_are_the_mirrors(tmp_path: Path) -> None:
    """Without mirrors the 5 views are the first 5 of the mirrored 10."""
    from netdsl.runtime.data import TenCrop

    x = torch.arange(2 * 36, dtype=torch.float32).reshape(2, 1, 6, 6)
    ten = TenCrop((4, 4)).batch(x)
    five = TenCrop((4, 4), mirror=False).batch(x)
    assert ten.shape[0] == 20 and five.shape[0] == 10
    assert torch.equal(five[:5], ten[:5]) and torch.equal(five[5:], ten[10:15])
    assert torch.equal(ten[5:10], ten[:5].flip(-1))


def test_nan_scores_give_nan_accuracy(trained: tuple[Path, Path]) -> None:
    """NaN weights: NaN top-1/top-5/loss and a NaN Accuracy, not 1.0."""
    spec, weights = trained
    w = load_weights(weights)
    w["fc2.weight"] = torch.full_like(w["fc2.weight"], math.nan)
    bad = spec.parent / "nan.safetensors"
    save_weights(bad, w)
    r = E.test(spec, weights=str(bad), fmt="none", allow_nonfinite=True)
    assert math.isnan(r["top1"]) and math.isnan(r["top5"]) and math.isnan(r["loss"])
    assert math.isnan(r["outputs"]["accuracy"])
