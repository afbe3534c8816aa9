"""WindowData (BVLC caffe's window_data_layer.cpp): shapes from its params or --input;
training with it is refused plainly (netdsl does not read window files)."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import ShapeError
from netdsl.layers import REGISTRY, TYPES
from netdsl.layers.base import Role
from netdsl.shapes import infer_shapes

from .helpers import params_from_text
from .roundtrip import convert_both_ways

RCNN = """name: "rcnn"
layer { name: "data" type: "WindowData" top: "data" top: "label"
  transform_param { mirror: true crop_size: 227 mean_file: "mean.binaryproto" }
  window_data_param { source: "window_file_train.txt" batch_size: 128 fg_threshold: 0.5
    bg_threshold: 0.5 fg_fraction: 0.25 context_pad: 16 crop_mode: "warp" } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 21 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


@pytest.fixture
def rcnn(tmp_path: Path) -> Path:
    p = tmp_path / "rcnn.prototxt"
    p.write_text(RCNN)
    return p


def test_fields_and_defaults() -> None:
    k = TYPES["WindowData"]
    assert REGISTRY["WINDOW_DATA"] is k and k.role is Role.INPUT and not k.has_data_source
    p = params_from_text("WindowData", "window_data_param { source: 'w.txt' batch_size: 4 }")
    assert (p.fg_threshold, p.bg_threshold, p.fg_fraction, p.context_pad, p.crop_mode,
            p.cache_images, p.root_folder) == (0.5, 0.5, 0.25, 0, "warp", False, "")
    assert k.batch_size(p) == 4 and k.data_source(p) is None


def test_shapes_from_its_params(rcnn: Path) -> None:
    table = infer_shapes(netdsl.load(rcnn, "train"))
    assert table.batch == 128
    assert table.blobs["data"] == (128, 3, 227, 227) and table.blobs["label"] == (128,)


def test_the_deprecated_crop_size_and_input(tmp_path: Path) -> None:
    p = tmp_path / "old.prototxt"
    p.write_text(RCNN.replace("crop_size: 227 ", "").replace(
        "batch_size: 128", "batch_size: 2 crop_size: 99"))
    assert infer_shapes(netdsl.load(p, "train")).blobs["data"] == (2, 3, 99, 99)
    table = infer_shapes(netdsl.load(p, "train"), None, {"data": (1, 50, 60)})
    assert table.blobs["data"] == (2, 1, 50, 60)


def test_no_crop_size_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "nocrop.prototxt"
    p.write_text(RCNN.replace("crop_size: 227 ", ""))
    with pytest.raises(ShapeError, match=r"needs transform \{ crop_size \}"):
        infer_shapes(netdsl.load(p, "train"))


def test_train_says_plainly_that_it_cannot_read_it(rcnn: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(rcnn)]) == 1
    err = capsys.readouterr().err
    assert "netdsl cannot read the data of WindowData layer 'data'" in err
    assert "Traceback" not in err


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, RCNN)
    assert "type: WindowData" in net and "context_pad: 16" in net
    assert "window_data_param {" in back and "transform_param {" in back
