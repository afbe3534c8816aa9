"""A Caffe train prototxt whose Data layer's database is not at hand: ``--input`` on
train/test/time gives the shape the database would, and ``--data`` is the data path for
every source kind (an image folder here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from netdsl.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

#: LeNet's data layers (examples/mnist/lenet_train_test.prototxt) before a small net.
PROTOTXT = """name: "LeNet"
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "examples/mnist/mnist_train_lmdb" batch_size: 8 backend: LMDB } }
layer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "examples/mnist/mnist_test_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 5 weight_filler { type: "xavier" } } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip1" bottom: "label" top: "accuracy"
  include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""
SOLVER = ["--set", "solver.max_iter=3", "--set", "solver.test_interval=3",
          "--set", "solver.test_iter=2", "--set", "solver.base_lr=0.01",
          "--set", "solver.random_seed=1", "--set", "solver.display=1"]
RUN = ["--devices", "cpu", "--workers", "0", "--format", "json"]


@pytest.fixture
def proto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "lenet_train_test.prototxt"
    p.write_text(PROTOTXT)
    return p


def _records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_missing_database_says_how_to_go_on(proto: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(proto), *RUN]) == 1
    err = capsys.readouterr().err
    assert "mnist_train_lmdb" in err and "--data PATH" in err
    assert "--set data.source=synthetic --input" in err


def test_synthetic_data_needs_the_input_shape(proto: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    synthetic = ["--set", "data.source=synthetic"]
    assert main(["train", str(proto), *synthetic, *SOLVER, *RUN]) == 1
    assert "--input data=C,H,W" in capsys.readouterr().err
    argv = ["train", str(proto), *synthetic, "--input", "data=1,28,28", *SOLVER, *RUN]
    assert main(argv) == 0
    records = _records(capsys.readouterr().out)
    assert records[0]["event"] == "start" and records[0]["batch"] == 8  # the layer's
    assert records[-1]["event"] == "done" and records[-1]["iter"] == 3
    assert "accuracy" in records[-1]


def test_set_data_changes_the_layers_data(proto: Path) -> None:
    """--set data.* on a net with Data layers changes their data, field by field."""
    from netdsl.sections import phase_data
    from netdsl.training import load_training

    t = load_training(proto, {"data.source": "synthetic", "data.shuffle": "true"})
    train, test = phase_data(t.train_net), phase_data(t.test_net)
    assert train is not None and test is not None
    assert (train.config.source, train.config.batch_size, train.config.scale) == (
        "synthetic", 8, 0.00390625)
    assert (test.config.source, test.config.batch_size) == ("synthetic", 4)
    t = load_training(proto, {"data.source": "synthetic", "data.batch_size": "64"})
    found = phase_data(t.test_net)
    assert found is not None and found.config.batch_size == 64  # a --set value wins


def test_input_on_test_and_time(proto: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthetic = ["--set", "data.source=synthetic", "--set", "data.num_samples=12",
                 "--input", "data=1,28,28"]
    assert main(["test", str(proto), *synthetic, *RUN]) == 0  # at the fillers
    r = _records(capsys.readouterr().out)[-1]
    assert (r["images"], r["batches"]) == (12, 3)  # the TEST layer's batch_size: 4
    assert set(r["outputs"]) == {"accuracy", "loss"}
    argv = ["time", str(proto), "--input", "data=1,28,28", "--iterations", "1",
            "--format", "json", "--devices", "cpu"]
    assert main(argv) == 0
    t = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert t["batch"] == 8 and [lay["name"] for lay in t["layers"]][0] == "conv1"


def test_data_flag_with_an_image_folder(proto: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--set data.source=folder --data DIR: the folder is the data (no 'needs path'), and
    the Data layer's shape is read from its first image."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / cls / f"{i}.png")
    argv = ["train", str(proto), "--set", "data.source=folder", "--set", "data.channels=1",
            "--data", str(tmp_path / "imgs"), *SOLVER, *RUN]
    assert main(argv) == 0
    records = _records(capsys.readouterr().out)
    assert records[-1]["event"] == "done" and records[-1]["iter"] == 3
    # --input wins over the images' own size (they are resized to it)
    argv = ["train", str(proto), "--set", "data.source=folder", "--set", "data.channels=1",
            "--data", str(tmp_path / "imgs"), "--input", "data=1,32,32", *SOLVER, *RUN]
    assert main(argv) == 0
    assert _records(capsys.readouterr().out)[-1]["event"] == "done"
