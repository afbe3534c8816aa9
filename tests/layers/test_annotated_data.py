"""AnnotatedData (SSD's Caffe, weiliu89/caffe, annotated_data_layer.cpp and
DataTransformer::InferBlobShape): shapes from transform_param or --input, its fields as
SSD's train.prototxt writes them, and a plain refusal to train from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import netdsl
from netdsl.diagnostics import DataError
from netdsl.layers._detection import InterpMode, ResizeMode, ResizeParams
from netdsl.layers.annotated_data import SSDTransform
from netdsl.layers.base import ShapeContext
from netdsl.shapes import infer_shapes

from .helpers import PATH, kind, params, params_from_text, shape_error
from .roundtrip import round_trip

SSD_TRAIN_DATA = """
  transform_param {
    mirror: true  mean_value: 104  mean_value: 117  mean_value: 123
    resize_param { prob: 1 resize_mode: WARP height: 300 width: 300
      interp_mode: LINEAR interp_mode: AREA interp_mode: NEAREST interp_mode: CUBIC
      interp_mode: LANCZOS4 }
    emit_constraint { emit_type: CENTER }
    distort_param { brightness_prob: 0.5 brightness_delta: 32 contrast_prob: 0.5
      contrast_lower: 0.5 contrast_upper: 1.5 hue_prob: 0.5 hue_delta: 18
      saturation_prob: 0.5 saturation_lower: 0.5 saturation_upper: 1.5 random_order_prob: 0 }
    expand_param { prob: 0.5 max_expand_ratio: 4.0 }
  }
  data_param { source: "examples/VOC0712/VOC0712_trainval_lmdb" batch_size: 32 backend: LMDB }
  annotated_data_param {
    batch_sampler { max_sample: 1 max_trials: 1 }
    batch_sampler { sampler { min_scale: 0.3 max_scale: 1.0 min_aspect_ratio: 0.5
                              max_aspect_ratio: 2.0 }
                    sample_constraint { min_jaccard_overlap: 0.1 } max_sample: 1
                    max_trials: 50 }
    label_map_file: "data/VOC0712/labelmap_voc.prototxt"
  }"""


def _shapes(tops: int = 2, batch: int = 4, inputs: dict | None = None, **kw: object) -> tuple:
    names = ("data", "label")[:tops]
    ctx = ShapeContext("L", "AnnotatedData", _span(), {}, names, batch, inputs or {})
    return kind("AnnotatedData").shape(params("AnnotatedData", **kw), (), ctx)


def _span():  # type: ignore[no-untyped-def]
    from netdsl.diagnostics import Span

    return Span(PATH, 1, 1)


def _warp(h: int, w: int, **kw: object) -> SSDTransform:
    return SSDTransform(resize_param=ResizeParams(height=h, width=w), **kw)  # type: ignore[arg-type]


def test_params_from_ssd_train_prototxt() -> None:
    p = params_from_text("AnnotatedData", SSD_TRAIN_DATA)
    assert (p.source, p.batch_size, p.backend) == (
        "examples/VOC0712/VOC0712_trainval_lmdb", 32, "LMDB")
    r = p.transform.resize_param
    assert (r.resize_mode, r.height, r.width) == (ResizeMode.WARP, 300, 300)
    assert r.interp_mode[-1] is InterpMode.LANCZOS4
    assert p.transform.expand_param.max_expand_ratio == 4.0
    assert len(p.batch_sampler) == 2 and p.batch_sampler[1].sampler.min_aspect_ratio == 0.5
    assert p.batch_sampler[1].sample_constraint.min_jaccard_overlap == 0.1
    assert kind("AnnotatedData").batch_size(p) == 32
    assert kind("AnnotatedData").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


def test_shapes_from_the_resize_and_crop() -> None:
    assert _shapes(transform=_warp(300, 300)) == ((4, 3, 300, 300), (1, 1, 1, 8))
    assert _shapes(tops=1, transform=_warp(300, 500)) == ((4, 3, 300, 500),)
    fit = SSDTransform(resize_param=ResizeParams(
        resize_mode=ResizeMode.FIT_LARGE_SIZE_AND_PAD, height=512, width=512), force_gray=True)
    assert _shapes(transform=fit)[0] == (4, 1, 512, 512)
    assert _shapes(transform=_warp(300, 300, crop_size=224))[0] == (4, 3, 224, 224)
    assert _shapes(transform=SSDTransform(crop_h=200, crop_w=100))[0] == (4, 3, 200, 100)
    assert _shapes(transform=_warp(300, 300, crop_h=256))[0] == (4, 3, 256, 300)


def test_shapes_from_input() -> None:
    assert _shapes(inputs={"data": (3, 321, 123)}) == ((4, 3, 321, 123), (1, 1, 1, 8))
    small = SSDTransform(resize_param=ResizeParams(resize_mode=ResizeMode.FIT_SMALL_SIZE,
                                                   height=300, width=300))
    assert _shapes(batch=1, inputs={"data": (3, 300, 450)}, batch_size=1, transform=small)[
        0] == (1, 3, 300, 450)


def test_checks() -> None:
    shape_error("AnnotatedData", (), tops=2, match="depends on the images")
    shape_error("AnnotatedData", (), tops=2, match="FIT_SMALL_SIZE needs batch_size 1",
                field="batch_size", batch_size=2, transform=SSDTransform(
                    resize_param=ResizeParams(resize_mode=ResizeMode.FIT_SMALL_SIZE)))
    shape_error("AnnotatedData", (), match="height and a width", field="transform",
                transform=_warp(300, 0))
    shape_error("AnnotatedData", (), match="larger than the resized", field="transform",
                transform=_warp(100, 100, crop_size=128))
    shape_error("AnnotatedData", (), match="both force_color and force_gray",
                field="transform", transform=_warp(10, 10, force_color=True, force_gray=True))


NET = """
layer { name: "data" type: "AnnotatedData" top: "data" top: "label"
""" + SSD_TRAIN_DATA + """ }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 } }
"""


def test_a_net_reads_its_shapes(tmp_path: Path) -> None:
    path = tmp_path / "train.prototxt"
    path.write_text(NET)
    table = infer_shapes(netdsl.load(path, "train"))
    assert table.blobs["data"] == (32, 3, 300, 300) and table.blobs["label"] == (1, 1, 1, 8)
    assert table.blobs["conv"] == (32, 4, 298, 298)


def test_train_says_it_cannot_read_annotated_lmdbs(tmp_path: Path) -> None:
    from netdsl.sections import missing_data, phase_data

    path = tmp_path / "train.prototxt"
    path.write_text(NET)
    net = netdsl.load(path, "train")
    assert kind("AnnotatedData").data_source(net.layers[0].params) is None
    assert phase_data(net) is None
    err = missing_data(net, "train")
    assert isinstance(err, DataError)
    assert "cannot read the data of AnnotatedData layer 'data'" in err.message
    assert err.span.line == 2


@pytest.mark.parametrize("block", ["data_param", "annotated_data_param"])
def test_fields_know_their_caffe_block(block: str) -> None:
    """Caffe reads source and batch_size from data_param, the rest from
    annotated_data_param; the fields say which (for writing prototxt back)."""
    import dataclasses

    p = params("AnnotatedData")
    fields = {f.name: f.metadata.get("block", "annotated_data_param")
              for f in dataclasses.fields(p) if f.name != "transform"}
    named = {k for k, v in fields.items() if v == block}
    if block == "data_param":
        assert {"source", "batch_size", "backend", "prefetch"} <= named
    else:
        assert named == {"batch_sampler", "label_map_file", "anno_type"}


def test_convert_both_ways(tmp_path: Path) -> None:
    text = round_trip(tmp_path, NET)
    assert "resize_param { height: 300 width: 300" in text


def test_prototxt_writes_data_fields_in_data_param(tmp_path: Path) -> None:
    """``netdsl convert`` to prototxt puts each field in the block Caffe reads it from
    (its ``metadata["block"]``): source and batch_size in data_param."""
    from netdsl.convert import net_to_prototxt

    spec = tmp_path / "net.prototxt"
    spec.write_text(NET)
    text = net_to_prototxt(spec)
    found = re.search(r"(?<![a-z_])data_param \{([^}]*)\}", text)
    assert found is not None
    data = found.group(1)
    assert 'source: "examples/VOC0712/VOC0712_trainval_lmdb"' in data
    assert "batch_size: 32" in data and "backend: LMDB" in data
    own = text[text.index("annotated_data_param {"):]
    own = own[:own.index("label_map_file")]
    assert "source" not in own and "batch_size" not in own
