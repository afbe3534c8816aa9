"""netdsl.caffe_pb: the hand-written caffe.proto subset parses Caffe's wire format.

The wire-format tests encode bytes by hand (tags and varints written out here), so they
check the field numbers and types independently of the descriptor under test.
"""

from __future__ import annotations

import struct

import pytest

from netdsl import caffe_pb


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return tag(field, 2) + varint(len(payload)) + payload


def vi(field: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return tag(field, 0) + varint(value)


def f32(field: int, value: float) -> bytes:
    """One unpacked float (wire type 5, fixed32 little-endian)."""
    return tag(field, 5) + struct.pack("<f", value)


def packed_floats(values: list[float]) -> bytes:
    return b"".join(struct.pack("<f", v) for v in values)


def test_encoder_helpers() -> None:
    # The examples from the protobuf encoding guide.
    assert varint(1) == b"\x01" and varint(150) == b"\x96\x01" and varint(300) == b"\xac\x02"
    assert vi(1, 150) == b"\x08\x96\x01"
    assert ld(2, b"testing") == b"\x12\x07testing"


def test_hand_encoded_blob_with_shape() -> None:
    shape = ld(1, varint(2) + varint(3))  # BlobShape.dim = [2, 3], packed
    raw = ld(7, shape) + ld(5, packed_floats([1, 2, 3, 4, 5, 6.5]))
    blob = caffe_pb.BlobProto.FromString(raw)
    assert list(blob.shape.dim) == [2, 3]
    assert list(blob.data) == [1, 2, 3, 4, 5, 6.5]
    assert not blob.HasField("num")


def test_hand_encoded_legacy_blob_and_doubles() -> None:
    raw = (
        vi(1, 1)  # num
        + vi(2, 1)  # channels
        + vi(3, 4)  # height
        + vi(4, 300)  # width: a two-byte varint
        + ld(8, struct.pack("<2d", 0.25, -1.5))  # double_data, packed
        + ld(6, packed_floats([9.0]))  # diff
    )
    blob = caffe_pb.BlobProto.FromString(raw)
    assert (blob.num, blob.channels, blob.height, blob.width) == (1, 1, 4, 300)
    assert blob.HasField("num") and blob.HasField("width")
    assert list(blob.double_data) == [0.25, -1.5]
    assert list(blob.diff) == [9.0]


def test_unpacked_floats_also_parse() -> None:
    # Writers may emit repeated floats unpacked (one fixed32 per element, wire type 5).
    raw = f32(5, 1.5) + f32(5, 2.5)
    assert list(caffe_pb.BlobProto.FromString(raw).data) == [1.5, 2.5]


def test_hand_encoded_datum() -> None:
    raw = (
        vi(1, 3)
        + vi(2, 2)
        + vi(3, 1)
        + ld(4, b"\x00\x7f\xff\x01\x02\x03")
        + vi(5, 9)
        + f32(6, 0.5)
        + vi(7, 1)
    )
    d = caffe_pb.Datum.FromString(raw)
    assert (d.channels, d.height, d.width, d.label) == (3, 2, 1, 9)
    assert d.data == b"\x00\x7f\xff\x01\x02\x03"
    assert list(d.float_data) == [0.5]
    assert d.encoded is True


def test_hand_encoded_v1_net_skips_unknown_fields() -> None:
    blob = ld(5, packed_floats([1.0, 2.0]))
    v1_layer = (
        ld(2, b"data")  # bottom
        + ld(3, b"ip")  # top
        + ld(4, b"ip1")  # name
        + vi(5, 14)  # type = INNER_PRODUCT
        + ld(6, blob)  # blobs
        + f32(7, 1.0)  # blobs_lr: not in the subset
        + ld(17, vi(1, 10))  # inner_product_param: not in the subset
    )
    raw = ld(1, b"old") + ld(2, v1_layer) + vi(5, 1)  # force_backward: unknown
    net = caffe_pb.NetParameter.FromString(raw)
    assert net.name == "old"
    (layer,) = net.layers
    assert layer.name == "ip1" and list(layer.bottom) == ["data"] and list(layer.top) == ["ip"]
    assert layer.type == 14 == caffe_pb.V1LayerParameter.INNER_PRODUCT
    assert caffe_pb.V1_TO_V2_TYPE[layer.type] == "InnerProduct"
    assert list(layer.blobs[0].data) == [1.0, 2.0]


def test_hand_encoded_v2_layer_field_100() -> None:
    layer = ld(1, b"conv1") + ld(2, b"Convolution") + ld(7, ld(5, packed_floats([3.0])))
    layer += ld(106, b"\x08\x02")  # convolution_param: unknown to the subset
    raw = ld(1, b"net") + ld(100, layer) + ld(3, b"data") + vi(4, 10)
    assert ld(100, b"")[:2] == b"\xa2\x06"  # field 100, wire type 2: a two-byte tag
    net = caffe_pb.NetParameter.FromString(raw)
    assert [lp.name for lp in net.layer] == ["conv1"]
    assert net.layer[0].type == "Convolution"
    assert list(net.layer[0].blobs[0].data) == [3.0]
    assert list(net.input) == ["data"] and list(net.input_dim) == [10]


def test_hand_encoded_v0_layer() -> None:
    v0 = ld(1, b"conv1") + ld(2, b"conv") + ld(50, ld(5, packed_floats([4.0])))
    raw = ld(2, ld(1, v0) + ld(2, b"data"))
    (v1,) = caffe_pb.NetParameter.FromString(raw).layers
    assert v1.HasField("layer")
    assert (v1.layer.name, v1.layer.type) == ("conv1", "conv")
    assert list(v1.layer.blobs[0].data) == [4.0]
    assert caffe_pb.V0_TO_V2_TYPE["conv"] == "Convolution"


def test_field_numbers_match_caffe_proto() -> None:
    expected = {
        "BlobShape": {"dim": 1},
        "BlobProto": {
            "num": 1,
            "channels": 2,
            "height": 3,
            "width": 4,
            "data": 5,
            "diff": 6,
            "shape": 7,
            "double_data": 8,
            "double_diff": 9,
        },
        "Datum": {
            "channels": 1,
            "height": 2,
            "width": 3,
            "data": 4,
            "label": 5,
            "float_data": 6,
            "encoded": 7,
        },
        "NetParameter": {
            "name": 1,
            "layers": 2,
            "input": 3,
            "input_dim": 4,
            "input_shape": 8,
            "layer": 100,
        },
        "LayerParameter": {"name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7},
        "V1LayerParameter": {"layer": 1, "bottom": 2, "top": 3, "name": 4, "type": 5, "blobs": 6},
        "V0LayerParameter": {"name": 1, "type": 2, "blobs": 50},
    }
    for msg, fields in expected.items():
        desc = getattr(caffe_pb, msg).DESCRIPTOR
        assert {f.name: f.number for f in desc.fields} == fields, msg


def test_v1_enum_tables() -> None:
    assert caffe_pb.V1_LAYER_TYPES[4] == "CONVOLUTION"
    assert caffe_pb.V1_LAYER_TYPES[39] == "DECONVOLUTION"
    assert caffe_pb.V1_LAYER_TYPES[14] == "INNER_PRODUCT"
    assert caffe_pb.V1_LAYER_TYPES[21] == "SOFTMAX_LOSS"
    assert caffe_pb.V1_TO_V2_TYPE[21] == "SoftmaxWithLoss"
    assert caffe_pb.V1_TO_V2_TYPE[0] == ""
    enum = caffe_pb.V1LayerParameter.DESCRIPTOR.enum_types_by_name["LayerType"]
    assert {v.number: v.name for v in enum.values} == caffe_pb.V1_LAYER_TYPES
    assert set(caffe_pb.V1_TO_V2_TYPE) == set(caffe_pb.V1_LAYER_TYPES)
    assert set(caffe_pb.V0_TO_V2_TYPE.values()) <= set(caffe_pb.V1_TO_V2_TYPE.values())


def test_round_trip_datum() -> None:
    d = caffe_pb.Datum(channels=1, height=2, width=2, data=bytes(range(4)), label=3)
    back = caffe_pb.Datum.FromString(d.SerializeToString())
    assert back == d


@pytest.mark.parametrize("name", ["BlobShape", "BlobProto", "Datum", "NetParameter"])
def test_messages_are_in_caffe_package(name: str) -> None:
    assert getattr(caffe_pb, name).DESCRIPTOR.full_name == f"caffe.{name}"
