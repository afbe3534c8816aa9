"""Excerpts of real public Caffe nets that netdsl once failed to load or convert.

Each test is a hand-written excerpt of the file named in its docstring, cut down to the
part that failed; the files themselves are not in the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from netdsl.convert import net_to_prototxt, prototxt_to_net
from netdsl.diagnostics import GraphError
from netdsl.shapes import infer_shapes


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def both_ways(tmp_path: Path, proto: Path, phase: str = "train") -> tuple[str, Path, Path]:
    """prototxt -> .net -> prototxt; every step gives the same layers, bottoms and shapes."""
    net = write(tmp_path, "n.net", prototxt_to_net(proto))
    back = write(tmp_path, "back.prototxt", net_to_prototxt(net))
    want = netdsl.load(proto, phase)
    for path in (net, back):
        got = netdsl.load(path, phase)
        assert [(x.name, x.type, x.bottoms, x.tops) for x in got.layers] == [
            (x.name, x.type, x.bottoms, x.tops) for x in want.layers]
    return net.read_text(), net, back


HED = """name: "HED"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } shape { dim: 1 dim: 1 dim: 16 dim: 16 } } }
layer { bottom: 'data' top: 'score-dsn1' name: 'score-dsn1' type: "Convolution"
  convolution_param { num_output: 1 kernel_size: 1 } }
layer { type: "Crop" name: 'crop' bottom: 'score-dsn1' bottom: 'data' top: 'upscore-dsn1' }
layer { type: "SigmoidCrossEntropyLoss" bottom: "upscore-dsn1" bottom: "label" top:"dsn1_loss"
  loss_weight: 1}
layer { bottom: 'data' top: 'score-dsn2' name: 'score-dsn2' type: "Convolution"
  convolution_param { num_output: 1 kernel_size: 1 } }
layer { type: "Crop" name: 'crop' bottom: 'score-dsn2' bottom: 'data' top: 'upscore-dsn2' }
layer { type: "SigmoidCrossEntropyLoss" bottom: "upscore-dsn2" bottom: "label" top:"dsn2_loss"
  loss_weight: 1}
"""


def test_hed_unnamed_and_same_named_layers(tmp_path: Path) -> None:
    """s9xie/hed examples/hed/train_val.prototxt leaves its loss layers unnamed, and
    deploy.prototxt names every Crop 'crop': Caffe's Net::Init asks for neither a name
    nor a unique one. netdsl names them (the last of a name keeps it, as Caffe's
    by-name lookups find the last)."""
    proto = write(tmp_path, "hed.prototxt", HED)
    net = netdsl.load(proto)
    assert [x.name for x in net.layers] == [
        "data", "score-dsn1", "crop_1", "dsn1_loss", "score-dsn2", "crop", "dsn2_loss"]
    table = infer_shapes(net)
    assert table.of("crop_1").tops == ((1, 1, 16, 16),)
    assert table.of("dsn2_loss").tops == ((),)
    text, _, _ = both_ways(tmp_path, proto)
    assert 'name: "crop_1"' in text


def test_a_renamed_layer_says_so_in_its_errors(tmp_path: Path) -> None:
    proto = write(tmp_path, "x.prototxt", HED.replace("bottom: 'score-dsn1' bottom: 'data'",
                                                      "bottom: 'score-dsn1' bottom: 'nope'"))
    with pytest.raises(GraphError) as info:
        netdsl.load(proto)
    assert any("named this Caffe layer 'crop_1'" in n[0] for n in info.value.notes)


def test_same_names_in_different_phases_stay(tmp_path: Path) -> None:
    proto = write(tmp_path, "p.prototxt", """
        layer { name: "data" type: "Input" top: "data" include { phase: TRAIN }
                input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "data" type: "Input" top: "data" include { phase: TEST }
                input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "data" type: "ReLU" bottom: "data" top: "r" }""")
    # each Input shares its phase with the ReLU (in both), not with the other Input
    assert [x.name for x in netdsl.load(proto, "train").layers] == ["data_1", "data"]
    assert [x.name for x in netdsl.load(proto, "test").layers] == ["data_2", "data"]
    two = write(tmp_path, "q.prototxt", proto.read_text().replace(
        'layer { name: "data" type: "ReLU" bottom: "data" top: "r" }', ""))
    assert [x.name for x in netdsl.load(two, "test").layers] == ["data"]


def test_a_net_file_still_needs_unique_names(tmp_path: Path) -> None:
    spec = write(tmp_path, "x.net", 'input { name: "a" shape: [2] }\n'
                 'layer { name: "r" type: ReLU bottom: "a" top: "b" }\n'
                 'layer { name: "r" type: ReLU bottom: "b" top: "c" }\n')
    with pytest.raises(GraphError, match="duplicate layer name 'r'"):
        netdsl.load(spec)


LRCN_DEPLOY = """name: "caffenet_to_lstm"
input: "cont_sentence"
input_shape { dim: 1 dim: 6 }
input: "input_sentence"
input_shape { dim: 1 dim: 6 }
input: "image_features"
input_shape { dim: 6 dim: 10 }
layer { name: "embedding" type: "Embed" bottom: "input_sentence"
  top: "embedded_input_sentence" embed_param { input_dim: 20 num_output: 8 bias_term: false } }
layer { name: "lstm1" type: "LSTM" bottom: "embedded_input_sentence" bottom: "cont_sentence"
  top: "lstm1" recurrent_param { num_output: 5 } }
layer { name: "lstm2" type: "LSTM" bottom: "lstm1" bottom: "cont_sentence"
  bottom: "image_features" top: "lstm2" recurrent_param { num_output: 5 } }
layer { name: "predict" type: "InnerProduct" bottom: "lstm2" top: "predict"
  inner_product_param { axis: 2 num_output: 20 } }
"""


def test_lrcn_deploy_inputs_keep_their_own_first_dimension(tmp_path: Path) -> None:
    """BVLC/caffe examples/coco_caption/lrcn_word_to_preds.deploy.prototxt (sizes cut
    down): cont_sentence is T x N = 1 x 1000, image_features N x F = 1000 x 1000. netdsl
    gave image_features the net's batch (1) as its first dimension, and the LSTM refused
    a static input of 1 x 1000 beside a 1 x 1000 x ... sequence."""
    proto = write(tmp_path, "lrcn.prototxt", LRCN_DEPLOY)
    table = infer_shapes(netdsl.load(proto))
    assert table.blobs["image_features"] == (6, 10)
    assert table.blobs["lstm2"] == (1, 6, 5)
    assert table.blobs["predict"] == (1, 6, 20)
    text, net, back = both_ways(tmp_path, proto)
    assert 'input { name: "image_features"  shape: [6, 10]  exact: true }' in text
    for path in (net, back):
        assert infer_shapes(netdsl.load(path)).blobs == table.blobs


ENET = """name: "ENet"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "bn1_0_2" type: "ReLU" bottom: "data" top: "bn1_0_2" }
layer { name: "drop1_0_3" type: "Python" bottom: "bn1_0_2" top: "drop1_0_3"
  python_param { module: "spatial_dropout" layer: "SpatialDropoutLayer"
                 param_str: "{'phase': 'TEST', 'p': '0.01'}" } }
"""


def test_enet_python_layer_keeps_its_bottom(tmp_path: Path) -> None:
    """TimoSaemann/ENet prototxts/enet_deploy.prototxt: a Python layer reading the layer
    before it. netdsl convert left that bottom out of the .net (implied, as for most
    types), but a Python layer may have no bottoms, so build implies none: the .net lost
    the edge."""
    proto = write(tmp_path, "enet.prototxt", ENET)
    text, _, _ = both_ways(tmp_path, proto)
    assert 'bottom: "bn1_0_2"' in text


MOBILENET_SSD_TEST = """name: "MobileNet-SSD"
layer { name: "data" type: "Input" top: "data" include { phase: TEST }
  input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv0" type: "Convolution" bottom: "data" top: "conv0"
  convolution_param { num_output: 2 kernel_size: 3 } }
"""


def test_a_test_net_read_in_the_train_phase_says_which_phase(tmp_path: Path) -> None:
    """chuanqi305/MobileNet-SSD voc/MobileNetSSD_test.prototxt: its data layer is
    TEST-only, and ``netdsl shapes`` reads the train phase unless told."""
    proto = write(tmp_path, "test.prototxt", MOBILENET_SSD_TEST)
    with pytest.raises(GraphError) as info:
        netdsl.load(proto, "train")
    assert "reads 'data'" in info.value.message
    assert info.value.hint == "only TEST-phase layers make 'data': try --phase test"
    assert info.value.span.line == 4
    assert infer_shapes(netdsl.load(proto, "test")).blobs["conv0"] == (1, 2, 6, 6)
