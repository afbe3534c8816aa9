"""Fine-tuning (Caffe's CopyTrainedLayersFrom): the copy report, several files in order,
and Caffe's refusals (shape mismatch, incompatible number of blobs)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import DataError, render
from netdsl.weights import finetune, load_net_weights, save_weights, weight_paths
from tests.test_cli_weights import SPEC, caffemodel, reference_blobs


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "two.net"
    p.write_text(SPEC)
    return p


def _net(spec: Path) -> netdsl.CompiledNet:
    return netdsl.compile(spec, devices="cpu", seed=1)


def test_report_says_what_was_copied_ignored_and_left(spec: Path, tmp_path: Path) -> None:
    w = torch.full((4, 1, 3, 3), 0.5)
    path = tmp_path / "a.safetensors"
    save_weights(path, {"conv.weight": w, "conv.bias": torch.zeros(4),
                        "fc8.weight": torch.zeros(3, 3)})
    net = _net(spec)
    fc_before = net.state_dict()["fc.weight"].clone()
    report = finetune(net, path)
    assert report.copied == ["conv"] and report.fresh == ["fc"]
    assert report.ignored == [("fc8", str(path))]
    assert report.keys == ["conv.weight", "conv.bias"]
    assert torch.equal(net.state_dict()["conv.weight"], w)
    assert torch.equal(net.state_dict()["fc.weight"], fc_before)  # its filler's values
    table = report.table()
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "1 layer copied, 1 source layer ignored, 1 layer left at fillers" in table
    assert "weight 4×1×3×3, bias 4" in table and "copied from a.safetensors" in table
    assert "ignored: not in the net (a.safetensors)" in table
    assert "left at its fillers" in table


def test_several_files_in_order_later_wins(spec: Path, tmp_path: Path) -> None:
    blobs = reference_blobs()
    first = caffemodel(tmp_path / "a.caffemodel", blobs)
    second = tmp_path / "b.safetensors"
    save_weights(second, {"fc.weight": torch.ones(10, 144)})
    net = _net(spec)
    keys = load_net_weights(net, f"{first},{second}", strict=False)
    assert keys == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    sd = net.state_dict()
    np.testing.assert_array_equal(sd["conv.weight"].numpy(), blobs["conv"][0])
    assert torch.equal(sd["fc.weight"], torch.ones(10, 144))  # b overrides a
    np.testing.assert_array_equal(sd["fc.bias"].numpy(), blobs["fc"][1])  # only a has it
    table = finetune(_net(spec), f"{first}, {second}").table()
    assert "copied from a.caffemodel, b.safetensors" in table


def test_report_is_logged(spec: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = caffemodel(tmp_path / "m.caffemodel", reference_blobs())
    with caplog.at_level(logging.INFO, logger="netdsl"):
        load_net_weights(_net(spec), model, strict=False)
    assert "fine-tuning from m.caffemodel\n2 layers copied" in caplog.text


def test_shape_mismatch_is_caffes_error(spec: Path, tmp_path: Path) -> None:
    blobs = reference_blobs()
    blobs["fc"][0] = np.zeros((1000, 144), np.float32)
    model = caffemodel(tmp_path / "m.caffemodel", blobs)
    net = _net(spec)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(DataError) as info:
        finetune(net, model)
    e = info.value
    assert e.message == "cannot copy param 0 of layer 'fc' ('fc.weight'): shape mismatch"
    assert e.notes[0][0] == "the file's shape is (1000, 144), the net's (10, 144)"
    assert e.hint is not None and "rename the layer" in e.hint
    assert e.span is not None and e.span.path == str(model)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_later_file_that_does_not_fit_changes_nothing(spec: Path, tmp_path: Path) -> None:
    good = caffemodel(tmp_path / "a.caffemodel", reference_blobs())
    bad = tmp_path / "b.safetensors"
    save_weights(bad, {"conv.weight": torch.zeros(4, 2, 3, 3), "conv.bias": torch.zeros(5)})
    net = _net(spec)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(DataError) as info:
        load_net_weights(net, f"{good},{bad}", strict=False)
    text = render(info.value)
    assert "2 blobs of the file cannot be copied" in text
    assert "'conv.bias' (param 1): (5,) in the file, (4,) in the net" in text
    assert str(bad) in text
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_extra_blob_in_a_matched_layer_is_refused(spec: Path, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, {"fc.weight": torch.zeros(10, 144), "fc.blob2": torch.zeros(3)})
    with pytest.raises(DataError, match="incompatible number of blobs"):
        finetune(_net(spec), path)


def test_a_file_that_matches_nothing_is_refused(spec: Path, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, {"other.weight": torch.zeros(3)})
    with pytest.raises(DataError, match="do not fit the net"):
        finetune(_net(spec), path)


def test_weight_paths(tmp_path: Path) -> None:
    assert weight_paths("a.safetensors, b.caffemodel") == ["a.safetensors", "b.caffemodel"]
    odd = tmp_path / "a,b.safetensors"
    odd.write_bytes(b"")
    assert weight_paths(odd) == [str(odd)]
    with pytest.raises(DataError):
        weight_paths(",")


def test_train_prints_the_report(spec: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = caffemodel(tmp_path / "m.caffemodel", reference_blobs())
    extra = tmp_path / "x.safetensors"
    save_weights(extra, {"fc.bias": torch.ones(10), "old_fc.weight": torch.ones(2)})
    assert main(["train", str(spec), "--weights", f"{model},{extra}",
                 "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert ("fine-tuning from m.caffemodel, x.safetensors\n"
            "2 layers copied, 1 source layer ignored") in err
    assert "old_fc" in err and "copied from m.caffemodel, x.safetensors" in err
