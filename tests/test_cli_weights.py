"""netdsl weights save/show/load/import, and fine-tuning from a converted caffemodel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl import caffe_pb
from netdsl.cli import main
from netdsl.weights import load_weights

SPEC = """
name: "two"
input { name: "data" shape: [1, 8, 8] }
input { name: "label" shape: [] }
layer { name: "conv" type: Convolution bottom: "data" num_output: 4 kernel_size: 3
        weight_filler: xavier() }
layer { name: "fc" type: InnerProduct bottom: "conv" num_output: 10 weight_filler: xavier() }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["fc", "label"] }
layer { name: "accuracy" type: Accuracy bottom: ["fc", "label"] phase: TEST }
data { source: "digits" batch_size: 16 }
solver { base_lr: 0.01 max_iter: 2 test_interval: 2 test_iter: 1 random_seed: 1
         snapshot_prefix: "snaps/two" }
"""


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "two.net"
    p.write_text(SPEC)
    return p


def caffemodel(path: Path, blobs: dict[str, list[np.ndarray]], v1: bool = False) -> Path:
    """A binary NetParameter as Caffe writes it (V2 with shapes, or V1 with legacy dims)."""
    net = caffe_pb.NetParameter()
    for name, arrays in blobs.items():
        if v1:
            lp = net.layers.add(name=name, type=4 if name == "conv" else 14)  # CONVOLUTION, IP
        else:
            lp = net.layer.add(name=name, type="Convolution" if name == "conv" else "InnerProduct")
        for a in arrays:
            b = lp.blobs.add()
            if v1:
                dims = [1] * (4 - a.ndim) + list(a.shape)
                b.num, b.channels, b.height, b.width = dims
            else:
                b.shape.dim.extend(a.shape)
            b.data.extend(a.ravel().tolist())
    path.write_bytes(net.SerializeToString())
    return path


def reference_blobs() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return {"conv": [rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
                     rng.standard_normal(4).astype(np.float32)],
            "fc": [rng.standard_normal((10, 144)).astype(np.float32),
                   rng.standard_normal(10).astype(np.float32)]}


@pytest.mark.parametrize("v1", [False, True])
def test_import_show_and_load(spec: Path, tmp_path: Path, v1: bool,
                              capsys: pytest.CaptureFixture[str]) -> None:
    blobs = reference_blobs()
    model = caffemodel(tmp_path / "m.caffemodel", blobs, v1=v1)
    out = tmp_path / "m.safetensors"
    assert main(["weights", "import", str(model), "-o", str(out)]) == 0
    got = load_weights(out)
    assert sorted(got) == ["conv.bias", "conv.weight", "fc.bias", "fc.weight"]
    np.testing.assert_array_equal(got["fc.weight"].numpy(), blobs["fc"][0])
    capsys.readouterr()
    assert main(["weights", "show", str(out), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["blobs"]["conv.weight"] == [4, 1, 3, 3]
    assert main(["weights", "load", str(spec), str(out)]) == 0
    assert "fits" in capsys.readouterr().out


def test_save_then_load_round_trip(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "init.safetensors"
    assert main(["weights", "save", str(spec), "-o", str(out), "--seed", "3"]) == 0
    net = netdsl.compile(spec, devices="cpu", seed=3)
    for k, v in net.state_dict().items():
        assert torch.equal(load_weights(out)[k], v)


def test_weights_that_do_not_fit(spec: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    blobs = reference_blobs()
    blobs["fc"][0] = np.zeros((10, 100), np.float32)
    model = caffemodel(tmp_path / "bad.caffemodel", blobs)
    out = tmp_path / "bad.safetensors"
    assert main(["weights", "import", str(model), "-o", str(out)]) == 0
    assert main(["weights", "load", str(spec), str(out)]) == 1
    err = capsys.readouterr().err
    assert "fc.weight" in err and "Traceback" not in err


def test_fine_tune_from_a_caffemodel(spec: Path, tmp_path: Path) -> None:
    from netdsl.runtime.train import Trainer

    blobs = reference_blobs()
    model = caffemodel(tmp_path / "m.caffemodel", blobs)
    trainer = Trainer(spec)
    trainer.load_weights(str(model))
    sd = trainer.net.state_dict()
    np.testing.assert_array_equal(sd["conv.weight"].cpu().numpy(), blobs["conv"][0])
    assert main(["train", str(spec), "--weights", str(model), "--format", "json"]) == 0
