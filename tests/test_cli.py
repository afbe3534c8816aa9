"""The command line: exit codes, no tracebacks, the JSON contract of `shapes`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netdsl.cli import main
from tests.shared import ROOT

ALEXNET = str(ROOT / "specs" / "alexnet.net")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_shapes_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, "shapes", ALEXNET, "--format", "json", "--batch", "2")
    assert set(out) >= {"name", "phase", "batch", "layers", "blobs", "total_params",
                        "total_macs"}
    assert (out["name"], out["phase"], out["batch"]) == ("AlexNet", "train", 2)
    assert out["total_params"] == 60_965_224
    assert out["total_macs"] == 2 * 724_406_816
    first = out["layers"][0]
    assert set(first) >= {"name", "type", "bottoms", "tops", "top_shapes", "params", "macs"}
    conv1 = next(lay for lay in out["layers"] if lay["name"] == "conv1")
    assert conv1["top_shapes"] == [[2, 96, 55, 55]]
    assert conv1["params"] == 96 * 3 * 11 * 11 + 96
    assert conv1["macs"] == 2 * 55 * 55 * 96 * 363
    # in-place layers keep the blob's name; blobs hold each blob's final shape
    assert out["blobs"]["conv1"] == [2, 96, 55, 55]
    assert out["blobs"]["fc8"] == [2, 1000]
    assert out["blobs"]["loss"] == []
    assert isinstance(out["layers"][0]["top_shapes"][0][0], int)


def test_shapes_test_phase(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_json(capsys, "shapes", ALEXNET, "--format", "json", "--phase", "test")
    names = [lay["name"] for lay in out["layers"]]
    assert "accuracy" in names and "top5" in names
    train = run_json(capsys, "shapes", ALEXNET, "--format", "json")
    assert "accuracy" not in [lay["name"] for lay in train["layers"]]


def test_shapes_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", ALEXNET, "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "1×96×55×55" in out
    assert "60,965,224 parameters" in out
    assert "724,406,816 MACs per image" in out


def test_input_flag_for_database_layers(shared_caffe: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lenet = str(shared_caffe / "prototxt" / "mnist__lenet_train_test.prototxt")
    assert main(["shapes", lenet]) == 1
    err = capsys.readouterr().err
    assert "--input data=C,H,W" in err and "Traceback" not in err
    out = run_json(capsys, "shapes", lenet, "--input", "data=1,28,28", "--format", "json")
    assert out["batch"] == 64
    assert out["blobs"]["data"] == [64, 1, 28, 28]
    assert out["blobs"]["ip2"] == [64, 10]


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", ALEXNET, "--batch", "0"]) == 2
    assert main(["shapes", ALEXNET, "--phase", "val"]) == 2
    assert main(["shapes", ALEXNET, "--input", "data"]) == 2
    assert main(["nonsense"]) == 2
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_unknown_input_name_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", ALEXNET, "--input", "image=3,32,32"]) == 1
    assert "not a data blob" in capsys.readouterr().err


def test_console_script_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "netdsl.cli", "shapes", ALEXNET, "--format",
                           "json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total_params"] == 60_965_224


def test_shapes_does_not_import_torch() -> None:
    code = (f"import sys; from netdsl.cli import main; main(['shapes', {ALEXNET!r}, "
            "'--format', 'json']); assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def test_default_placement_is_one_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    small = str(ROOT / "specs" / "alexnet_small.net")
    assert main(["time", small, "--iterations", "1", "--batch", "2", "--format", "json"]) == 0
    captured = capsys.readouterr()
    placing = [ln for ln in captured.err.splitlines() if "placing" in ln]
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"  # the default placement
    assert placing == [f"netdsl: placing gpu:0 -> {expected}"]
    assert json.loads(captured.out)["batch"] == 2


def test_lower_prints_the_program(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(ROOT / "specs" / "alexnet.net")
    assert main(["lower", spec, "--devices", "cpu", "--outputs", "fc8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# AlexNet (train) on gpu:0=cpu, gpu:1=cpu\ndef forward(self, data):")
    assert "self.layers.conv2(pool1)" in out and "return (fc8,)" in out
    assert main(["lower", spec, "--devices", "gpu:0=cpu,gpu:1=cpu", "--unfused"]) == 0
    out = capsys.readouterr().out
    assert 'getattr(self.layers.conv2, "1")' in out and "torch.cat([" in out
    assert main(["lower", spec, "--devices", "cpu", "--outputs", "fc9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no blob 'fc9'" in captured.err
