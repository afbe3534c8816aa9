"""netdsl.weights: caffemodel reading, safetensors round trips, fit checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl import caffe_pb
from netdsl import weights as W
from netdsl.diagnostics import DataError, render


def blob(arr: np.ndarray, legacy: tuple[int, int, int, int] | None = None, double=False):
    b = caffe_pb.BlobProto()
    if legacy is None:
        b.shape.dim.extend(arr.shape)
    else:
        b.num, b.channels, b.height, b.width = legacy
    if double:
        b.double_data.extend(arr.astype(np.float64).ravel().tolist())
    else:
        b.data.extend(arr.astype(np.float32).ravel().tolist())
    return b


def rnd(*shape: int) -> np.ndarray:
    return (
        np.random.default_rng(len(shape) * 7 + sum(shape)).standard_normal(shape).astype(np.float32)
    )


@pytest.fixture
def v2_model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = {
        "conv1.weight": rnd(4, 3, 3, 3),
        "conv1.bias": rnd(4),
        "bn1.mean": rnd(4),
        "bn1.variance": np.abs(rnd(4)),
        "bn1.scale_factor": np.array([1.0], np.float32),
        "sc1.weight": rnd(4),
        "sc1.bias": rnd(4),
        "fc.weight": rnd(10, 36),
        "fc.bias": rnd(10),
        "norm.blob0": rnd(4),
    }
    net = caffe_pb.NetParameter(name="tiny")
    net.input.append("data")
    net.layer.add(name="data", type="Input", top=["data"])
    for lname, ltype, keys in [
        ("conv1", "Convolution", ["conv1.weight", "conv1.bias"]),
        ("bn1", "BatchNorm", ["bn1.mean", "bn1.variance", "bn1.scale_factor"]),
        ("sc1", "Scale", ["sc1.weight", "sc1.bias"]),
        ("relu1", "ReLU", []),
        ("fc", "InnerProduct", ["fc.weight", "fc.bias"]),
        ("norm", "MysteryLayer", ["norm.blob0"]),
    ]:
        lp = net.layer.add(name=lname, type=ltype)
        for k in keys:
            lp.blobs.append(blob(arrays[k]))
    path = tmp_path / "tiny.caffemodel"
    path.write_bytes(net.SerializeToString())
    return path, arrays


def test_read_v2_caffemodel(v2_model) -> None:
    path, arrays = v2_model
    layers = W.read_caffemodel(path)
    assert [(lb.name, lb.type, len(lb.blobs)) for lb in layers] == [
        ("conv1", "Convolution", 2),
        ("bn1", "BatchNorm", 3),
        ("sc1", "Scale", 2),
        ("fc", "InnerProduct", 2),
        ("norm", "MysteryLayer", 1),
    ]
    tensors = W.caffemodel_to_tensors(str(path))
    assert list(tensors) == list(arrays)
    for key, arr in arrays.items():
        assert tensors[key].dtype == np.float32
        np.testing.assert_array_equal(tensors[key], arr)


def test_read_v1_caffemodel_legacy_shapes(tmp_path: Path) -> None:
    cw, cb, iw, ib = rnd(2, 1, 3, 3), rnd(2), rnd(4, 18), rnd(4)
    net = caffe_pb.NetParameter(name="v1")
    net.layers.add(name="mnist", type=caffe_pb.V1LayerParameter.DATA, top=["data"])
    conv = net.layers.add(name="conv1", type=caffe_pb.V1LayerParameter.CONVOLUTION)
    conv.blobs.extend([blob(cw, (2, 1, 3, 3)), blob(cb, (1, 1, 1, 2))])
    ip = net.layers.add(name="ip1", type=caffe_pb.V1LayerParameter.INNER_PRODUCT)
    ip.blobs.extend([blob(iw, (1, 1, 4, 18)), blob(ib, (1, 1, 1, 4), double=True)])
    one = net.layers.add(name="conv_1out", type=caffe_pb.V1LayerParameter.CONVOLUTION)
    one.blobs.append(blob(rnd(1, 1, 2, 2), (1, 1, 2, 2)))  # num_output 1: stays 4-D
    path = tmp_path / "v1.caffemodel"
    path.write_bytes(net.SerializeToString())

    layers = {lb.name: lb for lb in W.read_caffemodel(path)}
    assert set(layers) == {"conv1", "ip1", "conv_1out"}  # the blobless data layer is left out
    assert layers["conv1"].type == "Convolution" and layers["ip1"].type == "InnerProduct"
    t = W.caffemodel_to_tensors(path)
    assert {k: v.shape for k, v in t.items()} == {
        "conv1.weight": (2, 1, 3, 3),
        "conv1.bias": (2,),
        "ip1.weight": (4, 18),
        "ip1.bias": (4,),
        "conv_1out.weight": (1, 1, 2, 2),
    }
    np.testing.assert_array_equal(t["conv1.weight"], cw)
    np.testing.assert_array_equal(t["ip1.weight"], iw)
    np.testing.assert_allclose(t["ip1.bias"], ib)


def test_read_v0_caffemodel(tmp_path: Path) -> None:
    net = caffe_pb.NetParameter(name="v0")
    v1 = net.layers.add(bottom=["data"], top=["conv1"])
    v1.layer.name, v1.layer.type = "conv1", "conv"
    v1.layer.blobs.extend([blob(rnd(3, 1, 2, 2), (3, 1, 2, 2)), blob(rnd(3), (1, 1, 1, 3))])
    v1 = net.layers.add(bottom=["conv1"], top=["fc"])
    v1.layer.name, v1.layer.type = "fc", "innerproduct"
    v1.layer.blobs.extend([blob(rnd(5, 12), (1, 1, 5, 12))])
    path = tmp_path / "v0.caffemodel"
    path.write_bytes(net.SerializeToString())
    layers = W.read_caffemodel(path)
    assert [(lb.name, lb.type) for lb in layers] == [
        ("conv1", "Convolution"),
        ("fc", "InnerProduct"),
    ]
    assert {k: v.shape for k, v in W.caffemodel_to_tensors(path).items()} == {
        "conv1.weight": (3, 1, 2, 2),
        "conv1.bias": (3,),
        "fc.weight": (5, 12),
    }


def test_unknown_fields_are_skipped(v2_model) -> None:
    path, arrays = v2_model
    # Append an unknown varint field (number 5000) and an unknown length-delimited one.
    extra = bytes([0xC0, 0xB8, 0x02, 0x07]) + bytes([0xCA, 0xB8, 0x02, 0x03]) + b"abc"
    path.write_bytes(path.read_bytes() + extra)
    assert set(W.caffemodel_to_tensors(path)) == set(arrays)


def _error(fn, *args) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(np.random.default_rng(0).bytes(4096), id="random"),
        pytest.param(b"", id="empty"),
        pytest.param(b'name: "LeNet"\nlayer {\n  name: "data"\n}\n', id="prototxt"),
    ],
)
def test_corrupt_caffemodel(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(content)
    err = _error(W.read_caffemodel, path)
    assert err.span.path == str(path)
    assert str(path) in render(err)
    assert err.hint


def test_truncated_caffemodel(v2_model) -> None:
    path, _ = v2_model
    data = path.read_bytes()
    for cut in (len(data) - 3, len(data) // 2, 5):
        path.write_bytes(data[:cut])
        err = _error(W.read_caffemodel, path)
        assert err.span.path == str(path)


def test_missing_caffemodel(tmp_path: Path) -> None:
    err = _error(W.read_caffemodel, tmp_path / "nope.caffemodel")
    assert "not found" in err.message


def test_blob_count_mismatch(tmp_path: Path) -> None:
    net = caffe_pb.NetParameter()
    lp = net.layer.add(name="fc", type="InnerProduct")
    b = lp.blobs.add()
    b.shape.dim.extend([3, 4])
    b.data.extend([1.0] * 11)
    path = tmp_path / "m.caffemodel"
    path.write_bytes(net.SerializeToString())
    err = _error(W.read_caffemodel, path)
    assert "fc" in err.message and "11" in err.message


def test_blob_names() -> None:
    assert W.blob_names("BatchNorm", 3) == ["mean", "variance", "scale_factor"]
    assert W.blob_names("Convolution", 1) == ["weight"]
    assert W.blob_names("MysteryLayer", 2) == ["blob0", "blob1"]


# ---------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip(tmp_path: Path) -> None:
    base = torch.randn(6, 4)
    tensors = {
        "a.weight": base,
        "a.view": base[:3],  # shares memory with a.weight
        "b.bias": np.arange(5, dtype=np.float32),
        "c.half": torch.randn(2, 2).to(torch.bfloat16),
        "d.big_endian": np.arange(3, dtype=">f4"),
        "e.grad": torch.ones(2, requires_grad=True) * 2,
        "f.t": torch.randn(3, 5).t(),  # not contiguous
        "g.scalar": torch.tensor(3.5),
    }
    path = tmp_path / "w.safetensors"
    assert W.save_weights(path, tensors, {"net": "tiny"}) == path
    back, meta = W.load_weights_with_metadata(path)
    assert meta["net"] == "tiny"
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        want = (
            torch.as_tensor(np.asarray(v, dtype=v.dtype.newbyteorder("=")))
            if isinstance(v, np.ndarray)
            else v.detach()
        )
        assert back[k].dtype == want.dtype and back[k].shape == want.shape
        assert torch.equal(back[k], want), k
    assert W.load_weights(str(path)).keys() == back.keys()


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    W.save_weights(path, {"x": torch.zeros(3)})
    W.save_weights(path, {"x": torch.ones(3)})  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    assert torch.equal(W.load_weights(path)["x"], torch.ones(3))


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.safetensors"
    W.save_weights(path, {"x": torch.zeros(3)})

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(W.os, "replace", boom)
    err = _error(W.save_weights, path, {"x": torch.ones(3)})
    assert "No space left" in err.message and err.span.path == str(path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
    assert torch.equal(W.load_weights(path)["x"], torch.zeros(3))


def test_writer_is_read_by_safetensors_itself(tmp_path: Path) -> None:
    """netdsl writes the format itself: every dtype it stores reads back, bit for bit, with
    safetensors' own reader, from the file and from bytes."""
    from safetensors.torch import load as st_load
    from safetensors.torch import load_file

    tensors = {f"t.{str(dtype)[6:]}": torch.arange(6).reshape(2, 3).to(dtype)
               for dtype in W._ST_DTYPES}
    tensors.update({"empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5, dtype=torch.float64),
                    "odd": torch.ones(3, dtype=torch.int8)})  # makes later offsets unaligned
    path = tmp_path / "all.safetensors"
    W.save_weights(path, tensors, {"note": "x"})
    for back in (load_file(path), st_load(path.read_bytes())):
        assert back.keys() == tensors.keys()
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
            assert np.array_equal(W._raw_bytes(back[k]), W._raw_bytes(v)), k
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert header_len % 8 == 0  # data starts 8-byte aligned


def test_checksum_is_written_and_verified(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    W.save_weights(path, {"fc.weight": torch.randn(4, 3)}, {"spec": "a.net"})
    tensors, meta = W.load_weights_with_metadata(path)
    assert meta[W.CHECKSUM_KEY] == W.payload_sha256(tensors, meta)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"spec":"a.net"', b'"spec":"b.net"'))  # edited metadata
    err = _error(W.load_weights, path)
    assert err.span.path == str(path) and "checksum" in err.message
    assert W.load_weights(path, verify=False)["fc.weight"].shape == (4, 3)
    raw = bytearray(data)
    raw[-1] ^= 0x40  # a value
    path.write_bytes(bytes(raw))
    assert "checksum" in _error(W.load_weights, path).message


def test_files_without_a_checksum_still_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"x": torch.ones(2)}, str(path))
    assert torch.equal(W.load_weights(path)["x"], torch.ones(2))


def test_temporary_file_is_named_and_gets_the_umask(tmp_path: Path, monkeypatch) -> None:
    import os
    import stat

    seen: list[tuple[str, int]] = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, stat.S_IMODE(os.stat(src).st_mode)))
        real(src, dst)

    monkeypatch.setattr(W.os, "replace", spy)
    old = os.umask(0o027)
    try:
        W.save_weights(tmp_path / "w.safetensors", {"x": torch.ones(2)})
    finally:
        os.umask(old)
    ((name, mode),) = seen
    m = W.TEMP_NAME.fullmatch(name)
    assert m is not None and m.group(1) == "w.safetensors" and m.group(2) == str(os.getpid())
    assert mode == 0o640
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_save_into_missing_folder(tmp_path: Path) -> None:
    err = _error(W.save_weights, tmp_path / "no" / "w.safetensors", {"x": torch.zeros(1)})
    assert "folder" in err.message


@pytest.mark.parametrize(
    "content,hint_word",
    [
        (b"", "safetensors"),
        (np.random.default_rng(1).bytes(64), "safetensors"),
        (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", "pickle"),
        (b"PK\x03\x04" + bytes(60), "pickle"),
    ],
)
def test_load_bad_safetensors(tmp_path: Path, content: bytes, hint_word: str) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    err = _error(W.load_weights, path)
    assert err.span.path == str(path)
    assert hint_word in err.hint


def test_load_truncated_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    W.save_weights(path, {"x": torch.randn(100)})
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    assert _error(W.load_weights, path).span.path == str(path)
    path.write_bytes(data[:30])
    assert _error(W.load_weights, path).span.path == str(path)


def test_load_missing(tmp_path: Path) -> None:
    err = _error(W.load_weights, tmp_path / "none.safetensors")
    assert "not found" in err.message
    err = _error(W.load_weights, tmp_path)
    assert "folder" in err.message


def test_caffemodel_to_safetensors(v2_model, tmp_path: Path) -> None:
    path, arrays = v2_model
    out = tmp_path / "tiny.safetensors"
    W.save_weights(out, W.caffemodel_to_tensors(path))
    back = W.load_weights(out)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k].numpy(), v)


# ------------------------------------------------------------------------------ fit checks


def test_check_weights_fit_ok() -> None:
    W.check_weights_fit({"a.weight": (2, 3)}, {"a.weight": (2, 3)})


def test_check_weights_fit_reports_everything() -> None:
    expected = {"conv1.weight": (20, 3, 5, 5), "conv1.bias": (20,), "fc8.weight": (10, 50)}
    got = {"conv1.weight": (20, 1, 5, 5), "conv1.bias": (20,), "fc8_new.weight": (10, 50)}
    err = _error(W.check_weights_fit, expected, got)
    text = render(err)
    assert "(20, 1, 5, 5)" in text and "(20, 3, 5, 5)" in text
    assert "missing 'fc8.weight'" in text and "did you mean 'fc8_new.weight'" in text
    assert "unexpected 'fc8_new.weight'" in text
    assert "1 with the wrong shape" in err.message


def test_check_weights_fit_single_problem_in_message() -> None:
    with pytest.raises(DataError, match=r"'a.weight' has shape \(1,\) but the net expects \(2,\)"):
        W.check_weights_fit({"a.weight": (2,)}, {"a.weight": (1,)}, path="w.safetensors")


def test_v1_layer_with_unknown_enum_type(tmp_path: Path) -> None:
    # Fork-specific V1 types (e.g. 40) are not in caffe.proto's closed enum: protobuf
    # keeps them as unknown fields, the type reads as NONE and blobs get generic names.
    layer = caffe_pb.V1LayerParameter(name="crop")
    layer.blobs.append(blob(rnd(3)))
    raw = layer.SerializeToString() + bytes([5 << 3, 40])  # type = 40, varint
    net = caffe_pb.NetParameter()
    net.layers.add().MergeFromString(raw)
    path = tmp_path / "fork.caffemodel"
    path.write_bytes(net.SerializeToString())
    (lb,) = W.read_caffemodel(path)
    assert (lb.name, lb.type) == ("crop", "")
    assert list(W.caffemodel_to_tensors(path)) == ["crop.blob0"]


def test_recurrent_blob_names_follow_the_static_input() -> None:
    """Caffe's unrolled LSTM/RNN create the static input's weight third (FillUnrolledNet)."""
    assert W.blob_names("LSTM", 3) == ["W_xc", "b_c", "W_hc"]
    assert W.blob_names("LSTM", 4) == ["W_xc", "b_c", "W_xc_static", "W_hc"]
    assert W.blob_names("RNN", 6) == ["W_xh", "b_h", "W_xh_static", "W_hh", "W_ho", "b_o"]
