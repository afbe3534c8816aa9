"""Caffe's V0 nets (``layers { layer { type: "conv" ... } }``), upgraded as Caffe does.

The expected results are BVLC caffe's own: the V0 -> V1 pairs of
src/caffe/test/test_upgrade_proto.cpp (NetUpgradeTest.TestSimple and TestAllParams,
PaddingLayerUpgradeTest.TestTwoTops), transcribed as prototxt text, and the CaffeNet
deploy net as BVLC shipped it in V0 before February 2014 (examples/imagenet_deploy.prototxt,
with its padding layers), whose 60,965,224 parameters are CaffeNet's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import netdsl
from netdsl import syntax as s
from netdsl.caffe_compat import upgrade
from netdsl.caffe_pb import V1_LAYER_TYPES, V1_TO_V2_TYPE
from netdsl.caffe_v0 import is_v0, upgrade_v0
from netdsl.cli import main
from netdsl.diagnostics import ErrorList, NetdslError, SpecError, collect_warnings
from netdsl.parse import parse
from netdsl.shapes import infer_shapes

_V1_NAME_TO_V2 = {name: V1_TO_V2_TYPE[num] for num, name in V1_LAYER_TYPES.items()}


def canon(value: Any, v1_types: bool = False) -> Any:
    """A syntax tree without spans: a block is {key: [values in order]}, so two files
    match when each field is repeated in the same order, whatever the order of the keys.
    With ``v1_types``, a V1 enum ``type: CONVOLUTION`` reads as its V2 name."""
    if isinstance(value, s.File | s.Block):
        out: dict[str, list[Any]] = {}
        for item in value.items:
            assert isinstance(item, s.Field)
            v = canon(item.value, v1_types)
            if v1_types and item.key == "type" and v in _V1_NAME_TO_V2:
                v = _V1_NAME_TO_V2[v]
            out.setdefault(item.key, []).append(v)
        return out
    if isinstance(value, s.ListValue):
        return [canon(v, v1_types) for v in value.items]
    assert isinstance(value, s.Scalar)
    return value.value


def v0_to_v1(text: str) -> Any:
    return canon(upgrade_v0(parse(text, "v0.prototxt")))


def v1(text: str) -> Any:
    return canon(parse(text, "v1.prototxt"), v1_types=True)


# NetUpgradeTest.TestSimple: a data layer, a padding layer folded into conv1, an inner
# product and a loss.
SIMPLE_V0 = """
name: 'CaffeNet'
layers { layer { name: 'data' type: 'data' source: '/home/jiayq/Data/ILSVRC12/train-leveldb'
                 meanfile: '/home/jiayq/Data/ILSVRC12/image_mean.binaryproto'
                 batchsize: 256 cropsize: 227 mirror: true }
         top: 'data' top: 'label' }
layers { layer { name: 'pad1' type: 'padding' pad: 2 } bottom: 'data' top: 'pad1' }
layers { layer { name: 'conv1' type: 'conv' num_output: 96 kernelsize: 11 stride: 4
                 weight_filler { type: 'gaussian' std: 0.01 }
                 bias_filler { type: 'constant' value: 0. }
                 blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0. }
         bottom: 'pad1' top: 'conv1' }
layers { layer { name: 'fc8' type: 'innerproduct' num_output: 1000
                 weight_filler { type: 'gaussian' std: 0.01 }
                 bias_filler { type: 'constant' value: 0 }
                 blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0. }
         bottom: 'conv1' top: 'fc8' }
layers { layer { name: 'loss' type: 'softmax_loss' } bottom: 'fc8' bottom: 'label' }
"""
SIMPLE_V1 = """
name: 'CaffeNet'
layers { name: 'data' type: DATA
         data_param { source: '/home/jiayq/Data/ILSVRC12/train-leveldb' batch_size: 256 }
         transform_param { crop_size: 227 mirror: true
                           mean_file: '/home/jiayq/Data/ILSVRC12/image_mean.binaryproto' }
         top: 'data' top: 'label' }
layers { name: 'conv1' type: CONVOLUTION
         convolution_param { num_output: 96 kernel_size: 11 stride: 4 pad: 2
                             weight_filler { type: 'gaussian' std: 0.01 }
                             bias_filler { type: 'constant' value: 0. } }
         blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0.
         bottom: 'data' top: 'conv1' }
layers { name: 'fc8' type: INNER_PRODUCT
         inner_product_param { num_output: 1000
                               weight_filler { type: 'gaussian' std: 0.01 }
                               bias_filler { type: 'constant' value: 0 } }
         blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0.
         bottom: 'conv1' top: 'fc8' }
layers { name: 'loss' type: SOFTMAX_LOSS bottom: 'fc8' bottom: 'label' }
"""
SIMPLE_V2 = """
name: 'CaffeNet'
layer { name: 'data' type: 'Data'
        data_param { source: '/home/jiayq/Data/ILSVRC12/train-leveldb' batch_size: 256 }
        transform_param { crop_size: 227 mirror: true
                          mean_file: '/home/jiayq/Data/ILSVRC12/image_mean.binaryproto' }
        top: 'data' top: 'label' }
layer { name: 'conv1' type: 'Convolution'
        convolution_param { num_output: 96 kernel_size: 11 stride: 4 pad: 2
                            weight_filler { type: 'gaussian' std: 0.01 }
                            bias_filler { type: 'constant' value: 0. } }
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        bottom: 'data' top: 'conv1' }
layer { name: 'fc8' type: 'InnerProduct'
        inner_product_param { num_output: 1000
                              weight_filler { type: 'gaussian' std: 0.01 }
                              bias_filler { type: 'constant' value: 0 } }
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        bottom: 'conv1' top: 'fc8' }
layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'fc8' bottom: 'label' }
"""


def test_caffe_simple_v0_to_v1() -> None:
    assert is_v0(parse(SIMPLE_V0, "v0.prototxt"))
    assert not is_v0(parse(SIMPLE_V1, "v1.prototxt"))
    assert v0_to_v1(SIMPLE_V0) == v1(SIMPLE_V1)


def _mults(p: Any) -> tuple[float, float]:
    return (float(p.value.scalar("lr_mult")), float(p.value.scalar("decay_mult")))


def test_caffe_simple_v0_reads_as_its_v2_form() -> None:
    """V0 -> V1 -> netdsl gives what Caffe's expected V2 text gives (lr/decay numbers
    compared as numbers: V1 writes them as floats, V2 as ints)."""
    got = upgrade(parse(SIMPLE_V0, "v0.prototxt"))
    want = upgrade(parse(SIMPLE_V2, "v2.prototxt"))
    for g, w in zip(got.items, want.items, strict=True):
        assert isinstance(g, s.Field) and isinstance(w, s.Field)
        assert g.key == w.key
        if not isinstance(g.value, s.Block):
            assert canon(g.value) == canon(w.value)
            continue
        assert isinstance(w.value, s.Block)
        gp, wp = canon(g.value), canon(w.value)
        gp.pop("param", None), wp.pop("param", None)
        assert gp == wp
        assert [_mults(p) for p in g.value.fields("param")] == [
            _mults(p) for p in w.value.fields("param")]


# PaddingLayerUpgradeTest.TestTwoTops: one padding layer read by two conv layers.
_CONV = ("type: 'conv' num_output: 96 kernelsize: 11 stride: 4 "
         "weight_filler { type: 'gaussian' std: 0.01 } blobs_lr: 1. weight_decay: 1.")
TWO_TOPS_V0 = f"""
layers {{ layer {{ name: 'data' type: 'data' source: 'train-leveldb' batchsize: 256 }}
         top: 'data' top: 'label' }}
layers {{ layer {{ name: 'pad1' type: 'padding' pad: 2 }} bottom: 'data' top: 'pad1' }}
layers {{ layer {{ name: 'conv1' {_CONV} }} bottom: 'pad1' top: 'conv1' }}
layers {{ layer {{ name: 'fc8' type: 'innerproduct' num_output: 1000 }}
         bottom: 'conv1' top: 'fc8' }}
layers {{ layer {{ name: 'conv2' {_CONV} }} bottom: 'pad1' top: 'conv2' }}
layers {{ layer {{ name: 'loss' type: 'softmax_loss' }} bottom: 'fc8' bottom: 'label' }}
"""
TWO_TOPS_EXPECTED = f"""
layers {{ layer {{ name: 'data' type: 'data' source: 'train-leveldb' batchsize: 256 }}
         top: 'data' top: 'label' }}
layers {{ layer {{ name: 'conv1' {_CONV} pad: 2 }} bottom: 'data' top: 'conv1' }}
layers {{ layer {{ name: 'fc8' type: 'innerproduct' num_output: 1000 }}
         bottom: 'conv1' top: 'fc8' }}
layers {{ layer {{ name: 'conv2' {_CONV} pad: 2 }} bottom: 'data' top: 'conv2' }}
layers {{ layer {{ name: 'loss' type: 'softmax_loss' }} bottom: 'fc8' bottom: 'label' }}
"""


def test_caffe_padding_layer_read_by_two_convs() -> None:
    assert v0_to_v1(TWO_TOPS_V0) == v0_to_v1(TWO_TOPS_EXPECTED)


# NetUpgradeTest.TestAllParams (the layers that carry parameters): every V0 field goes to
# its V1 field and block, by layer type.
_SRC = "source: '/home/jiayq/Data/ILSVRC12/train-leveldb'"
_MEAN = "'/home/jiayq/Data/ILSVRC12/image_mean.binaryproto'"
ALL_PARAMS_V0 = f"""
name: 'CaffeNet' input: 'input_data'
input_dim: 64 input_dim: 3 input_dim: 32 input_dim: 32
layers {{ layer {{ name: 'data' type: 'data' {_SRC} meanfile: {_MEAN} batchsize: 256
                  cropsize: 227 mirror: true scale: 0.25 rand_skip: 73 }}
         top: 'data' top: 'label' }}
layers {{ layer {{ name: 'images' type: 'images'
                  source: '/home/jiayq/Data/ILSVRC12/train-images' meanfile: {_MEAN}
                  batchsize: 256 cropsize: 227 mirror: true scale: 0.25 rand_skip: 73
                  shuffle_images: true new_height: 40 new_width: 30 }}
         top: 'images_data' top: 'images_label' }}
layers {{ layer {{ name: 'window_data' type: 'window_data' {_SRC} meanfile: {_MEAN}
                  batchsize: 256 cropsize: 227 mirror: true det_fg_threshold: 0.25
                  det_bg_threshold: 0.75 det_fg_fraction: 0.5 det_context_pad: 16
                  det_crop_mode: 'square' }}
         top: 'window_data' top: 'window_label' }}
layers {{ layer {{ name: 'hdf5data' type: 'hdf5_data' source: '/my/hdf5/data'
                  batchsize: 256 }} top: 'hdf5data' }}
layers {{ layer {{ name: 'conv1' type: 'conv' num_output: 96 biasterm: false pad: 4
                  kernelsize: 11 stride: 4 weight_filler {{ type: 'gaussian' std: 0.01 }}
                  bias_filler {{ type: 'constant' value: 3. }}
                  blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0. }}
         bottom: 'data' top: 'conv1' }}
layers {{ layer {{ name: 'pool1ave' type: 'pool' pool: AVE kernelsize: 3 stride: 2 }}
         bottom: 'conv1' top: 'pool1ave' }}
layers {{ layer {{ name: 'pool1stoch' type: 'pool' pool: STOCHASTIC kernelsize: 4
                  stride: 5 }} bottom: 'conv1' top: 'pool1stoch' }}
layers {{ layer {{ name: 'concat' type: 'concat' concat_dim: 2 }}
         bottom: 'pool1ave' bottom: 'pool1stoch' top: 'pool1concat' }}
layers {{ layer {{ name: 'norm1' type: 'lrn' local_size: 5 alpha: 0.0001 beta: 0.75 }}
         bottom: 'pool1concat' top: 'norm1' }}
layers {{ layer {{ name: 'fc6' type: 'innerproduct' num_output: 4096 biasterm: false
                  weight_filler {{ type: 'gaussian' std: 0.005 }}
                  bias_filler {{ type: 'constant' value: 1. }}
                  blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0. }}
         bottom: 'norm1' top: 'fc6' }}
layers {{ layer {{ name: 'relu6' type: 'relu' }} bottom: 'fc6' top: 'fc6' }}
layers {{ layer {{ name: 'drop6' type: 'dropout' dropout_ratio: 0.2 }}
         bottom: 'fc6' top: 'fc6' }}
layers {{ layer {{ name: 'loss' type: 'infogain_loss' source: '/my/infogain/matrix' }}
         bottom: 'fc6' bottom: 'label' }}
layers {{ layer {{ name: 'hdf5_output' type: 'hdf5_output'
                  hdf5_output_param {{ file_name: '/my/hdf5/output/file' }} }} }}
layers {{ layer {{ name: 'tanh' type: 'tanh' }} }}
"""
ALL_PARAMS_V1 = f"""
name: 'CaffeNet' input: 'input_data'
input_dim: 64 input_dim: 3 input_dim: 32 input_dim: 32
layers {{ name: 'data' type: DATA
         data_param {{ {_SRC} batch_size: 256 rand_skip: 73 }}
         transform_param {{ crop_size: 227 mirror: true scale: 0.25 mean_file: {_MEAN} }}
         top: 'data' top: 'label' }}
layers {{ name: 'images' type: IMAGE_DATA
         image_data_param {{ source: '/home/jiayq/Data/ILSVRC12/train-images'
                            batch_size: 256 rand_skip: 73 shuffle: true new_height: 40
                            new_width: 30 }}
         transform_param {{ mean_file: {_MEAN} crop_size: 227 mirror: true scale: 0.25 }}
         top: 'images_data' top: 'images_label' }}
layers {{ name: 'window_data' type: WINDOW_DATA
         window_data_param {{ {_SRC} batch_size: 256 fg_threshold: 0.25
                             bg_threshold: 0.75 fg_fraction: 0.5 context_pad: 16
                             crop_mode: 'square' }}
         transform_param {{ mirror: true crop_size: 227 mean_file: {_MEAN} }}
         top: 'window_data' top: 'window_label' }}
layers {{ name: 'hdf5data' type: HDF5_DATA
         hdf5_data_param {{ source: '/my/hdf5/data' batch_size: 256 }} top: 'hdf5data' }}
layers {{ name: 'conv1' type: CONVOLUTION
         convolution_param {{ num_output: 96 bias_term: false pad: 4 kernel_size: 11
                             stride: 4 weight_filler {{ type: 'gaussian' std: 0.01 }}
                             bias_filler {{ type: 'constant' value: 3. }} }}
         blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0.
         bottom: 'data' top: 'conv1' }}
layers {{ name: 'pool1ave' type: POOLING
         pooling_param {{ pool: AVE kernel_size: 3 stride: 2 }}
         bottom: 'conv1' top: 'pool1ave' }}
layers {{ name: 'pool1stoch' type: POOLING
         pooling_param {{ pool: STOCHASTIC kernel_size: 4 stride: 5 }}
         bottom: 'conv1' top: 'pool1stoch' }}
layers {{ name: 'concat' type: CONCAT concat_param {{ concat_dim: 2 }}
         bottom: 'pool1ave' bottom: 'pool1stoch' top: 'pool1concat' }}
layers {{ name: 'norm1' type: LRN lrn_param {{ local_size: 5 alpha: 0.0001 beta: 0.75 }}
         bottom: 'pool1concat' top: 'norm1' }}
layers {{ name: 'fc6' type: INNER_PRODUCT
         inner_product_param {{ num_output: 4096 bias_term: false
                               weight_filler {{ type: 'gaussian' std: 0.005 }}
                               bias_filler {{ type: 'constant' value: 1. }} }}
         blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0.
         bottom: 'norm1' top: 'fc6' }}
layers {{ name: 'relu6' type: RELU bottom: 'fc6' top: 'fc6' }}
layers {{ name: 'drop6' type: DROPOUT dropout_param {{ dropout_ratio: 0.2 }}
         bottom: 'fc6' top: 'fc6' }}
layers {{ name: 'loss' type: INFOGAIN_LOSS
         infogain_loss_param {{ source: '/my/infogain/matrix' }}
         bottom: 'fc6' bottom: 'label' }}
layers {{ name: 'hdf5_output' type: HDF5_OUTPUT
         hdf5_output_param {{ file_name: '/my/hdf5/output/file' }} }}
layers {{ name: 'tanh' type: TANH }}
"""


def test_caffe_all_params_v0_to_v1() -> None:
    assert v0_to_v1(ALL_PARAMS_V0) == v1(ALL_PARAMS_V1)


# BVLC's examples/imagenet_deploy.prototxt before February 2014 (V0, with padding layers),
# fillers and learning rates left out but for conv1.
CAFFENET_V0 = """input: "data"
input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
layers { layer { name: "conv1" type: "conv" num_output: 96 kernelsize: 11 stride: 4
                 weight_filler { type: "gaussian" std: 0.01 }
                 bias_filler { type: "constant" value: 0. }
                 blobs_lr: 1. blobs_lr: 2. weight_decay: 1. weight_decay: 0. }
         bottom: "data" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 3 stride: 2 }
         bottom: "conv1" top: "pool1" }
layers { layer { name: "norm1" type: "lrn" local_size: 5 alpha: 0.0001 beta: 0.75 }
         bottom: "pool1" top: "norm1" }
layers { layer { name: "pad2" type: "padding" pad: 2 } bottom: "norm1" top: "pad2" }
layers { layer { name: "conv2" type: "conv" num_output: 256 group: 2 kernelsize: 5 }
         bottom: "pad2" top: "conv2" }
layers { layer { name: "relu2" type: "relu" } bottom: "conv2" top: "conv2" }
layers { layer { name: "pool2" type: "pool" pool: MAX kernelsize: 3 stride: 2 }
         bottom: "conv2" top: "pool2" }
layers { layer { name: "norm2" type: "lrn" local_size: 5 alpha: 0.0001 beta: 0.75 }
         bottom: "pool2" top: "norm2" }
layers { layer { name: "pad3" type: "padding" pad: 1 } bottom: "norm2" top: "pad3" }
layers { layer { name: "conv3" type: "conv" num_output: 384 kernelsize: 3 }
         bottom: "pad3" top: "conv3" }
layers { layer { name: "relu3" type: "relu" } bottom: "conv3" top: "conv3" }
layers { layer { name: "pad4" type: "padding" pad: 1 } bottom: "conv3" top: "pad4" }
layers { layer { name: "conv4" type: "conv" num_output: 384 group: 2 kernelsize: 3 }
         bottom: "pad4" top: "conv4" }
layers { layer { name: "relu4" type: "relu" } bottom: "conv4" top: "conv4" }
layers { layer { name: "pad5" type: "padding" pad: 1 } bottom: "conv4" top: "pad5" }
layers { layer { name: "conv5" type: "conv" num_output: 256 group: 2 kernelsize: 3 }
         bottom: "pad5" top: "conv5" }
layers { layer { name: "relu5" type: "relu" } bottom: "conv5" top: "conv5" }
layers { layer { name: "pool5" type: "pool" kernelsize: 3 pool: MAX stride: 2 }
         bottom: "conv5" top: "pool5" }
layers { layer { name: "fc6" type: "innerproduct" num_output: 4096 }
         bottom: "pool5" top: "fc6" }
layers { layer { name: "relu6" type: "relu" } bottom: "fc6" top: "fc6" }
layers { layer { name: "drop6" type: "dropout" dropout_ratio: 0.5 }
         bottom: "fc6" top: "fc6" }
layers { layer { name: "fc7" type: "innerproduct" num_output: 4096 }
         bottom: "fc6" top: "fc7" }
layers { layer { name: "relu7" type: "relu" } bottom: "fc7" top: "fc7" }
layers { layer { name: "drop7" type: "dropout" dropout_ratio: 0.5 }
         bottom: "fc7" top: "fc7" }
layers { layer { name: "fc8" type: "innerproduct" num_output: 1000 }
         bottom: "fc7" top: "fc8" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc8" top: "prob" }
"""


def test_caffenet_v0_deploy_has_caffenets_shapes_and_parameters(tmp_path: Path) -> None:
    path = tmp_path / "imagenet_deploy.prototxt"
    path.write_text(CAFFENET_V0)
    net = netdsl.load(path, "test")
    table = infer_shapes(net)
    assert [lay.name for lay in net.layers if lay.name.startswith("pad")] == []
    assert table.of("conv1").tops == ((10, 96, 55, 55),)
    assert table.of("conv2").tops == ((10, 256, 27, 27),)  # pad 2 from pad2
    assert table.of("conv5").tops == ((10, 256, 13, 13),)  # pad 1 from pad5
    assert table.of("pool5").tops == ((10, 256, 6, 6),)
    assert table.of("prob").tops == ((10, 1000),)
    assert table.total_params == 60_965_224  # CaffeNet's (and AlexNet's) count
    conv1 = next(lay for lay in net.layers if lay.name == "conv1")
    assert [(p.lr_mult, p.decay_mult) for p in conv1.param_specs] == [(1, 1), (2, 0)]


def test_v0_spans_point_into_the_v0_text() -> None:
    f = upgrade(parse(CAFFENET_V0, "n.prototxt"))
    conv2 = next(i.value for i in f.items if isinstance(i, s.Field) and i.key == "layer"
                 and isinstance(i.value, s.Block) and i.value.scalar("name") == "conv2")
    ks, pad = conv2.first("kernel_size"), conv2.first("pad")
    assert (ks.key_span.line, ks.key_span.col) == (14, 70)  # `kernelsize: 5` of conv2
    assert (pad.span.line, pad.span.col) == (13, 47)  # `pad: 2` of the padding layer
    assert conv2.scalar("bottom") == "norm1"


def test_upgrade_of_v0_is_idempotent() -> None:
    once = upgrade(parse(CAFFENET_V0, "n.prototxt"))
    assert upgrade(once) == once


def _errors(text: str) -> list[NetdslError]:
    with pytest.raises(NetdslError) as e:
        upgrade(parse(text, "bad.prototxt"))
    err = e.value
    return list(err.errors) if isinstance(err, ErrorList) else [err]


def test_v0_errors_where_caffe_stops() -> None:
    (e,) = _errors("layers { layer { name: 'c' type: 'inner_product' } }")
    assert e.message == "unknown V0 layer type 'inner_product'"
    assert e.hint == "did you mean 'innerproduct'?"
    assert (e.span.line, e.span.col) == (1, 34)
    (e,) = _errors("layers { layer { name: 'c' type: 'Convolution' } }")
    assert e.hint is not None and e.hint.startswith("V0 types are accuracy, bnll, concat, conv,")
    (e,) = _errors("layers { layer { name: 'c' type: 'conv' kernel_size: 3 } }")
    assert e.message == "unknown field 'kernel_size' in a V0 layer"
    assert e.hint == "did you mean 'kernelsize'?"
    text = ("input: 'data' input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n"
            "layers { layer { name: 'pad1' type: 'padding' pad: 1 } bottom: 'data' top: 'p' }\n"
            "layers { layer { name: 'r' type: 'relu' } bottom: 'p' top: 'r' }\n")
    (e,) = _errors(text)
    assert isinstance(e, SpecError)
    assert "padding layer 'pad1' feeds a 'relu' layer" in e.message
    assert (e.span.line, e.span.col) == (3, 43)


def test_v0_fields_caffe_drops_are_warnings() -> None:
    text = ("layers { layer { name: 'r' type: 'relu' kernelsize: 3 new_num: 2 scale: 0.5 }\n"
            "         bottom: 'x' top: 'x' include { phase: TEST } }\n")
    with collect_warnings() as ws:
        f = upgrade(parse(text, "w.prototxt"))
    layer = f.items[0].value
    assert isinstance(layer, s.Block)
    assert [i.key for i in layer.items] == ["name", "type", "bottom", "top"]
    assert [w.message.split(":")[0] for w in ws] == [
        "V0 field 'kernelsize' is ignored in a 'relu' layer",
        "V0 field 'new_num' is ignored in a 'relu' layer",
        "V0 field 'scale' is ignored in a 'relu' layer",
        "'include' beside a V0 'layer' block is dropped, as Caffe's upgrade does",
    ]
    assert (ws[0].span.line, ws[0].span.col) == (1, 41)
    assert (ws[3].span.line, ws[3].span.col) == (2, 31)


def test_cli_reads_a_v0_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v0.prototxt"
    path.write_text(CAFFENET_V0)
    assert main(["shapes", str(path), "--format", "json"]) == 0
    out = capsys.readouterr()
    assert "60965224" in out.out.replace(",", "").replace(" ", "")
    assert "warning" not in out.err
