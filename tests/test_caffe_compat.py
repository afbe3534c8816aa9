"""Caffe's forms (V1 `layers`, `*_param` blocks, `input_dim`) read into the same IR."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl import syntax as s
from netdsl.caffe_compat import upgrade
from netdsl.parse import parse
from netdsl.shapes import infer_shapes
from tests.shared import DB_INPUTS


def up(text: str) -> s.File:
    return upgrade(parse(text, "t.prototxt"))


def test_param_blocks_are_flattened() -> None:
    f = up('layer { name: "c" type: "Convolution" '
           'convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "xavier" } }'
           ' transform_param { scale: 0.5 } }')
    keys = [i.key for i in f.items[0].value.items]
    assert keys == ["name", "type", "num_output", "kernel_size", "weight_filler", "transform"]


def test_foreign_param_blocks_are_ignored_as_caffe_does() -> None:
    f = up('layer { name: "i" type: "Input" top: "data" image_data_param { source: "x" } '
           'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }')
    body = f.items[0].value
    assert body.first("source") is None
    assert [v.value for v in body.first("shape").value.items] == [3, 8, 8]
    assert body.first("batch").value.value == 1


def test_v1_layers_and_blobs_lr() -> None:
    f = up('layers { name: "c" type: CONVOLUTION blobs_lr: 1 blobs_lr: 2 weight_decay: 1 '
           'weight_decay: 0 convolution_param { num_output: 4 kernel_size: 1 } }')
    item = f.items[0]
    assert item.key == "layer"
    params = item.value.fields("param")
    assert [(p.value.scalar("lr_mult"), p.value.scalar("decay_mult")) for p in params] == [
        (1, 1), (2, 0)]


def test_input_dim_becomes_an_input_layer() -> None:
    f = up('input: "data" input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227')
    layer = f.items[0].value
    assert layer.scalar("type") == "Input"
    assert [v.value for v in layer.first("shape").value.items] == [3, 227, 227]
    assert layer.scalar("batch") == 10


def test_wrong_input_dim_count_is_an_error() -> None:
    from netdsl.diagnostics import SpecError

    with pytest.raises(SpecError, match="input 'data' needs 4 input_dim values"):
        up('input: "data" input_dim: 1 input_dim: 3')
    # an input named by something other than a string (it was an AttributeError)
    with pytest.raises(SpecError, match="input 1 needs 4 input_dim values"):
        up("input: [1, 2] input_dim: 1")


def test_input_shape_form() -> None:
    f = up('input: "data" input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }')
    assert [v.value for v in f.items[0].value.first("shape").value.items] == [3, 32, 32]


def test_upgrade_is_idempotent() -> None:
    f = up('input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8 '
           'layers { name: "c" type: CONVOLUTION blobs_lr: 1 '
           'convolution_param { num_output: 4 kernel_size: 1 } }')
    assert upgrade(f) == f


@pytest.mark.parametrize("v1, v2", [
    ("mnist_v1__lenet.prototxt", "mnist__lenet.prototxt"),
    ("mnist_v1__lenet_train_test.prototxt", "mnist__lenet_train_test.prototxt"),
    ("bvlc_alexnet_v1__deploy.prototxt", "bvlc_alexnet__deploy.prototxt"),
])
def test_v1_and_v2_files_give_the_same_net(shared_caffe: Path, v1: str, v2: str) -> None:
    for phase in ("train", "test"):
        a = netdsl.load(shared_caffe / "prototxt" / v1, phase)
        b = netdsl.load(shared_caffe / "prototxt" / v2, phase)
        ta = infer_shapes(a, inputs=DB_INPUTS.get(v2, {}))
        tb = infer_shapes(b, inputs=DB_INPUTS.get(v2, {}))
        assert [(r.type, r.tops, r.params) for r in ta.layers] == [
            (r.type, r.tops, r.params) for r in tb.layers]
        assert [lay.param_specs for lay in a.layers] == [lay.param_specs for lay in b.layers]


def test_types_reading_other_param_blocks() -> None:
    f = up('layer { name: "d" type: "Deconvolution" convolution_param { num_output: 4 } } '
           'layer { name: "l" type: "SoftmaxWithLoss" softmax_param { axis: 1 } '
           'loss_param { ignore_label: 3 } pooling_param { pool: MAX } }')
    assert [i.key for i in f.items[0].value.items] == ["name", "type", "num_output"]
    assert [i.key for i in f.items[1].value.items] == ["name", "type", "axis", "ignore_label"]


def test_same_field_in_two_param_blocks_is_an_error() -> None:
    from netdsl.diagnostics import SpecError

    with pytest.raises(SpecError, match="both in softmax_param and in loss_param"):
        up('layer { name: "l" type: "SoftmaxWithLoss" softmax_param { axis: 1 } '
           'loss_param { axis: 2 } }')


def test_fields_that_start_with_a_keyword_survive_the_upgrade() -> None:
    """SSD's ``aspect_ratio`` (and Caffe's ``group``) read as whole field names."""
    f = up('layer { name: "p" type: "PriorBox" bottom: "c" bottom: "data" top: "p"\n'
           '  prior_box_param { min_size: 30 aspect_ratio: 2 aspect_ratio: 3 flip: true } }\n'
           'layer { name: "c" type: "Convolution" convolution_param { num_output: 4 '
           'kernel_size: 3 group: 2 } }')
    prior, conv = (i.value for i in f.items)
    assert [v.value for v in (a.value for a in prior.fields("aspect_ratio"))] == [2, 3]
    assert conv.scalar("group") == 2


def test_a_v0_file_is_upgraded_first() -> None:
    f = up('input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
           'layers { layer { name: "c" type: "conv" num_output: 4 kernelsize: 3 group: 1 '
           'blobs_lr: 1 } bottom: "data" top: "c" }')
    layer = f.items[1].value
    assert f.items[1].key == "layer"
    assert layer.scalar("type") == "Convolution"
    assert layer.scalar("kernel_size") == 3 and layer.scalar("group") == 1
    assert layer.first("param").value.scalar("lr_mult") == 1


def test_an_input_not_led_by_the_net_batch_stays_whole() -> None:
    f = up('input: "x" input_shape { dim: 3 dim: 2 dim: 5 }\n'
           'input: "h0" input_shape { dim: 1 dim: 2 dim: 4 }\n'
           'layer { name: "c" type: "Input" top: "c" input_param { shape { dim: 3 dim: 2 } } }')
    x, h0, c = (i.value for i in f.items)
    assert [v.value for v in x.first("shape").value.items] == [2, 5]
    assert x.scalar("batch") == 3 and x.first("exact") is None
    assert [v.value for v in h0.first("shape").value.items] == [1, 2, 4]
    assert h0.scalar("exact") == "true" and h0.first("batch") is None
    assert c.scalar("batch") == 3
    assert upgrade(f) == f


def test_nested_param_blocks_that_are_fields_stay_blocks() -> None:
    """DetectionOutput's nms_param is a field (Caffe nests it in
    detection_output_param); written in the layer (.net), it is not flattened."""
    f = up('layer { name: "d" type: "DetectionOutput" num_classes: 4 '
           "nms_param { nms_threshold: 0.45 top_k: 400 } }")
    body = f.items[0].value
    assert body.first("nms_threshold") is None
    assert body.first("nms_param").value.scalar("top_k") == 400
    f = up('layer { name: "d" type: "DetectionOutput" detection_output_param { num_classes: 4 '
           "nms_param { nms_threshold: 0.45 } } }")
    assert f.items[0].value.first("nms_param").value.scalar("nms_threshold") == 0.45
