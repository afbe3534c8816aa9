"""ImageLabelmapData (HED's Caffe fork, image_labelmap_data_layer.cpp): image and label-map
shapes from ImageData's params or --input; training with it is refused plainly."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import ShapeError
from netdsl.layers import TYPES
from netdsl.layers.base import Role
from netdsl.shapes import infer_shapes

from .roundtrip import convert_both_ways

# The shape of HED's train_val data layer: pairs of images and edge maps.
HED = """name: "edges"
layer { name: "data" type: "ImageLabelmapData" top: "data" top: "label"
  transform_param { mirror: false mean_value: 104.0 mean_value: 117.0 mean_value: 123.0 }
  image_data_param { root_folder: "data/" source: "train_pair.lst" batch_size: 1
                     shuffle: true new_height: 0 new_width: 0 } }
layer { name: "score" type: "Convolution" bottom: "data" top: "score"
        convolution_param { num_output: 1 kernel_size: 1 } }
layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "score" bottom: "label"
        top: "loss" }
"""


@pytest.fixture
def hed(tmp_path: Path) -> Path:
    p = tmp_path / "hed.prototxt"
    p.write_text(HED)
    return p


def test_a_fork_input_layer_without_a_reader() -> None:
    k = TYPES["ImageLabelmapData"]
    assert k.role is Role.INPUT and not k.has_data_source
    assert (k.__doc__ or "").startswith("Image/label-map pairs") and "fork: HED" in k.__doc__


def test_shapes_from_input_the_label_map_follows_the_image(hed: Path) -> None:
    net = netdsl.load(hed, "train")
    with pytest.raises(ShapeError, match="the images' size, which shapes does not read") as e:
        infer_shapes(net)
    assert e.value.hint is not None and "--input data=3,H,W" in e.value.hint
    table = infer_shapes(net, None, {"data": (3, 320, 480)})
    assert table.blobs["data"] == (1, 3, 320, 480)
    assert table.blobs["label"] == (1, 1, 320, 480)
    assert table.blobs["score"] == (1, 1, 320, 480)


def test_shapes_from_the_resize_or_the_crop(tmp_path: Path) -> None:
    p = tmp_path / "sized.prototxt"
    p.write_text(HED.replace("new_height: 0 new_width: 0", "new_height: 200 new_width: 300")
                 .replace("shuffle: true", "shuffle: true is_color: false"))
    table = infer_shapes(netdsl.load(p, "train"))
    assert table.blobs["data"] == (1, 1, 200, 300) and table.blobs["label"] == (1, 1, 200, 300)
    p.write_text(HED.replace("mirror: false", "mirror: false crop_size: 64"))
    assert infer_shapes(netdsl.load(p, "train")).blobs["label"] == (1, 1, 64, 64)
    p.write_text(HED.replace("new_height: 0", "new_height: 200"))
    with pytest.raises(ShapeError, match="new_height and new_width together"):
        infer_shapes(netdsl.load(p, "train"))


def test_train_says_plainly_that_it_cannot_read_it(
        hed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(hed), "--devices", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "netdsl cannot read the data of ImageLabelmapData layer 'data'" in err
    assert "Traceback" not in err


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, HED, {"data": (3, 32, 48)})
    assert "type: ImageLabelmapData" in net
    assert "image_data_param {" in back and "root_folder:" in back
