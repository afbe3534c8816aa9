"""DenseImageData (fork: SegNet's Caffe, alexgkendall/caffe-segnet
dense_image_data_layer.cpp; ENet's adds label_divide_factor): top shapes from its params
or --input, its CHECKs, and training saying plainly that it cannot read the list."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.diagnostics import DataError, ShapeError
from netdsl.layers.base import LayerType, Role
from netdsl.shapes import infer_shapes

from .helpers import kind, params, params_from_text, shape_error, shapes
from .roundtrip import convert_both_ways

SEGNET = """name: "segnet"
layer { name: "data" type: "DenseImageData" top: "data" top: "label"
  dense_image_data_param { source: "/SegNet/CamVid/train.txt" batch_size: 4 shuffle: true %s } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }
"""


def write(tmp_path: Path, text: str, name: str = "n.prototxt") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def blobs(path: Path, inputs: dict[str, tuple[int, ...]] | None = None,
          phase: str = "train") -> dict[str, tuple[int, ...]]:
    return dict(infer_shapes(netdsl.load(path, phase), None, inputs or {}).blobs)


def test_fields_and_defaults_from_the_forks_proto() -> None:
    p = params_from_text("DenseImageData", "")
    assert (p.source, p.batch_size, p.rand_skip, p.shuffle) == ("", 0, 0, False)
    assert (p.new_height, p.new_width, p.is_color, p.root_folder) == (0, 0, True, "")
    assert (p.mirror, p.crop_width, p.crop_height, p.label_divide_factor) == (False, 0, 0, 1)
    p = params_from_text("DenseImageData", "dense_image_data_param { source: 'l.txt' "
                         "batch_size: 3 new_height: 512 new_width: 1024 "
                         "label_divide_factor: 8 } transform_param { crop_size: 5 }")
    assert (p.batch_size, p.new_height, p.label_divide_factor) == (3, 512, 8)
    assert p.transform.crop_size == 5


def test_a_data_layer_that_training_cannot_read() -> None:
    k = kind("DenseImageData")
    assert k.role is Role.INPUT and k.is_input and not k.has_data_source
    assert type(k).lower is LayerType.lower
    assert k.data_source(params("DenseImageData", source="train.txt")) is None
    assert k.batch_size(params("DenseImageData", batch_size=4)) == 4


def test_sizes_from_the_params() -> None:
    assert shapes("DenseImageData", (), tops=2, new_height=360, new_width=480) == (
        (1, 3, 360, 480), (1, 1, 360, 480))
    # ENet's encoder training: labels at 1/8 of the resized images
    assert shapes("DenseImageData", (), tops=2, new_height=512, new_width=1024,
                  label_divide_factor=8) == ((1, 3, 512, 1024), (1, 1, 64, 128))
    # crops win over the resize, for the labels too
    assert shapes("DenseImageData", (), tops=2, new_height=512, new_width=1024,
                  crop_height=300, crop_width=400, label_divide_factor=8) == (
        (1, 3, 300, 400), (1, 1, 300, 400))
    from netdsl.layers.data import Transform

    assert shapes("DenseImageData", (), tops=2, is_color=False, crop_height=9, crop_width=9,
                  transform=Transform(crop_size=224)) == ((1, 1, 224, 224), (1, 1, 224, 224))


def test_checks() -> None:
    shape_error("DenseImageData", (), tops=2, match="new_height and new_width",
                field="new_height", new_height=360)
    shape_error("DenseImageData", (), tops=2, match="new_height and new_width",
                field="new_width", new_width=480)
    shape_error("DenseImageData", (), tops=2, match="crop_height and crop_width",
                field="crop_width", crop_width=480)
    shape_error("DenseImageData", (), tops=2, match="label_divide_factor must be positive",
                field="label_divide_factor", new_height=4, new_width=4, label_divide_factor=0)
    shape_error("DenseImageData", (), tops=2, match="crop_width must be >= 0",
                field="crop_width", crop_height=4, crop_width=-4)


def test_segnets_file_needs_the_image_size(tmp_path: Path) -> None:
    """SegNet's segnet_train.prototxt gives no size: the images have it (CamVid 360x480)."""
    proto = write(tmp_path, SEGNET % "")
    with pytest.raises(ShapeError, match="images in the list") as e:
        blobs(proto)
    assert e.value.hint is not None and "--input data=3,H,W" in e.value.hint
    got = blobs(proto, {"data": (3, 360, 480)})
    assert got["data"] == (4, 3, 360, 480) and got["label"] == (4, 1, 360, 480)
    assert got["conv"] == (4, 2, 360, 480)
    got = blobs(write(tmp_path, SEGNET % "new_height: 360 new_width: 480", "r.prototxt"))
    assert got["data"] == (4, 3, 360, 480) and got["label"] == (4, 1, 360, 480)


def test_training_says_it_cannot_read_the_list(tmp_path: Path) -> None:
    from netdsl.runtime.loading import data_config

    net = netdsl.load(write(tmp_path, SEGNET % "new_height: 360 new_width: 480"), "train")
    with pytest.raises(DataError, match="cannot read the data of DenseImageData layer 'data'"):
        data_config(net, "train")


def test_convert_round_trip(tmp_path: Path) -> None:
    for extra, given in (("new_height: 360 new_width: 480 label_divide_factor: 2", {}),
                         ("crop_height: 224 crop_width: 320 is_color: false", {}),
                         ("", {"data": (3, 45, 60)})):
        convert_both_ways(tmp_path, SEGNET % extra, given)
