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


# ------------------------------------------------------------------------- weights export


def _decode(raw: bytes) -> list[tuple[int, int, object]]:
    """A protobuf wire-format decoder of its own (no protobuf library): (field, wire type,
    value) with varints as ints and length-delimited fields as bytes; a second opinion on
    the caffemodel writer."""
    out: list[tuple[int, int, object]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            b = raw[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(raw):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, wire, varint()))
        elif wire == 2:
            size = varint()
            out.append((number, wire, raw[i:i + size]))
            i += size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def _varints(raw: bytes) -> list[int]:
    out, n, shift = [], 0, 0
    for b in raw:
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(n)
            n = shift = 0
    return out


def test_export_round_trips_through_import(spec: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    w = tmp_path / "w.safetensors"
    assert main(["weights", "save", str(spec), "-o", str(w), "--seed", "5"]) == 0
    model = tmp_path / "w.caffemodel"
    capsys.readouterr()
    assert main(["weights", "export", str(w), "-o", str(model), "--net", str(spec)]) == 0
    assert capsys.readouterr().out == f"wrote 4 blobs of 2 layers to {model}\n"
    back = tmp_path / "back.safetensors"
    assert main(["weights", "import", str(model), "-o", str(back)]) == 0
    want, got = load_weights(w), load_weights(back)
    assert list(got) == list(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    # the protobuf classes (caffe.proto's field numbers) read it as Caffe would
    net = caffe_pb.NetParameter()
    net.ParseFromString(model.read_bytes())
    assert net.name == "two"
    assert [(lp.name, lp.type, len(lp.blobs)) for lp in net.layer] == [
        ("conv", "Convolution", 2), ("fc", "InnerProduct", 2)]
    assert list(net.layer[0].blobs[0].shape.dim) == [4, 1, 3, 3]
    np.testing.assert_array_equal(np.asarray(net.layer[1].blobs[0].data, np.float32),
                                  want["fc.weight"].numpy().ravel())
    # and so does a decoder that shares no code with protobuf or the writer
    fields = _decode(model.read_bytes())
    assert fields[0] == (1, 2, b"two")
    layers = [_decode(v) for n, _, v in fields if n == 100]  # type: ignore[arg-type]
    assert [(lay[0][2], lay[1][2]) for lay in layers] == [(b"conv", b"Convolution"),
                                                          (b"fc", b"InnerProduct")]
    blob = _decode(layers[0][2][2])  # type: ignore[arg-type]  # conv's weight: BlobProto
    assert [n for n, _, _ in blob] == [7, 5]  # shape, then data (packed)
    shape = _decode(blob[0][2])  # type: ignore[arg-type]
    assert shape[0][:2] == (1, 2) and _varints(shape[0][2]) == [4, 1, 3, 3]  # type: ignore
    values = np.frombuffer(blob[1][2], "<f4")  # type: ignore[arg-type]
    np.testing.assert_array_equal(values, want["conv.weight"].numpy().ravel())


def test_export_without_net_keeps_the_file_order(spec: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    w = tmp_path / "w.safetensors"
    assert main(["weights", "save", str(spec), "-o", str(w)]) == 0
    model = tmp_path / "w.caffemodel"
    assert main(["weights", "export", str(w), "-o", str(model)]) == 0
    assert "without --net" in capsys.readouterr().err
    net = caffe_pb.NetParameter()
    net.ParseFromString(model.read_bytes())
    assert [(lp.name, lp.type) for lp in net.layer] == [("conv", ""), ("fc", "")]
    assert [list(b.shape.dim) for b in net.layer[0].blobs] == [[4, 1, 3, 3], [4]]  # Caffe's


def test_export_refuses_weights_of_another_net(spec: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    w = tmp_path / "w.safetensors"
    from netdsl.weights import save_weights

    save_weights(w, {"conv.weight": torch.zeros(4, 1, 3, 3), "conv2.weight": torch.zeros(2)})
    model = tmp_path / "w.caffemodel"
    assert main(["weights", "export", str(w), "-o", str(model), "--net", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "layers that the net does not have: conv2" in err and "Traceback" not in err
    assert not model.exists()
    save_weights(w, {"conv.weight": torch.zeros(4, 1, 3, 3), "conv.gamma": torch.zeros(2)})
    assert main(["weights", "export", str(w), "-o", str(model), "--net", str(spec)]) == 1
    assert "a Convolution layer has weight, bias" in capsys.readouterr().err
    save_weights(w, {"conv.weight": torch.zeros(4, dtype=torch.int64)})
    assert main(["weights", "export", str(w), "-o", str(model)]) == 1
    assert "holds int64 values" in capsys.readouterr().err


def test_export_of_a_scalar_and_a_large_blob(tmp_path: Path) -> None:
    from netdsl.caffemodel import CaffeLayerBlobs, encode_caffemodel, read_caffemodel

    big = np.random.default_rng(0).standard_normal((300, 200)).astype(np.float32)
    path = tmp_path / "m.caffemodel"
    path.write_bytes(encode_caffemodel("", [CaffeLayerBlobs("a", "", [np.float32(2.5) *
                                                                     np.ones(()), big])]))
    (layer,) = read_caffemodel(path)
    assert layer.blobs[0].shape == () and layer.blobs[0] == np.float32(2.5)
    np.testing.assert_array_equal(layer.blobs[1], big)
