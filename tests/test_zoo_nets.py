"""Nets from the detection/segmentation and mobile families, checked against their papers.

* FCN-8s (Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
  Segmentation", 2015), shaped as shelhamer/fcn.berkeleyvision.org's voc-fcn8s net (its
  net.py and deploy.prototxt): a VGG16 trunk (narrowed here) with pad 100 on conv1_1,
  deconvolutions x2, x2, x8, and Crop layers at offsets 5, 9 and 31. For a 500x500 input
  the score map is 500x500, through the sizes the real net has (score_fr 16x16, upscore2
  34x34, upscore_pool4 70x70, upscore8 568x568).
* ShuffleNet 1x, g = 3 (Zhang et al. 2017) and MobileNet-v2 1.0 at 224 (Sandler et al. 2018):
  the shipped specs/shufflenet.net and specs/mobilenet_v2.net, their parameter and MAC
  counts against the papers and official code, and against counts made here by hand from
  the papers' architecture tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.convert import net_to_prototxt
from netdsl.shapes import ShapeTable, infer_shapes
from tests.layers.roundtrip import convert_both_ways
from tests.shared import ROOT

SPECS = ROOT / "specs"

# --------------------------------------------------------------------------- FCN-8s

#: voc-fcn8s with every width divided (64 -> 4, ... 4096 -> 16, 21 classes -> 3); kernels,
#: strides, pads, deconvolutions and crop offsets as in shelhamer/fcn.berkeleyvision.org.
FCN8S = """
name: "FCN-8s-narrow"
input { name: "data"  shape: [3, 500, 500] }

group conv(n, k = 3, pad = 1) {
  layer { name: "${name}"  type: Convolution  bottom: $bottom  num_output: $n  kernel_size: $k
          pad: $pad }
  layer { name: "relu${name}"  type: ReLU  bottom: "${name}"  top: "${name}" }
}
group vgg_block(b, n, convs) {
  repeat $convs as i { layer { name: "conv${b}_${i + 1}"  type: conv  n: $n } }
  layer { name: "pool${b}"  type: Pooling  pool: MAX  kernel_size: 2  stride: 2 }
}

layer { name: "conv1_1"  type: conv  bottom: "data"  n: 4  pad: 100 }
layer { name: "conv1_2"  type: conv  n: 4 }
layer { name: "pool1"  type: Pooling  pool: MAX  kernel_size: 2  stride: 2 }
layer { name: "b2"  type: vgg_block  b: 2  n: 8  convs: 2 }
layer { name: "b3"  type: vgg_block  b: 3  n: 16  convs: 3 }
layer { name: "b4"  type: vgg_block  b: 4  n: 16  convs: 3 }
layer { name: "b5"  type: vgg_block  b: 5  n: 16  convs: 3 }
layer { name: "fc6"  type: conv  n: 16  k: 7  pad: 0 }
layer { name: "drop6"  type: Dropout  bottom: "fc6"  top: "fc6" }
layer { name: "fc7"  type: conv  n: 16  k: 1  pad: 0 }
layer { name: "drop7"  type: Dropout  bottom: "fc7"  top: "fc7" }
layer { name: "score_fr"  type: Convolution  num_output: 3  kernel_size: 1 }
layer { name: "upscore2"  type: Deconvolution  num_output: 3  kernel_size: 4  stride: 2
        bias_term: false }
layer { name: "score_pool4"  type: Convolution  bottom: "pool4"  num_output: 3  kernel_size: 1 }
layer { name: "score_pool4c"  type: Crop  bottom: ["score_pool4", "upscore2"]  axis: 2
        offset: 5 }
layer { name: "fuse_pool4"  type: Eltwise  bottom: ["upscore2", "score_pool4c"] }
layer { name: "upscore_pool4"  type: Deconvolution  num_output: 3  kernel_size: 4  stride: 2
        bias_term: false }
layer { name: "score_pool3"  type: Convolution  bottom: "pool3"  num_output: 3  kernel_size: 1 }
layer { name: "score_pool3c"  type: Crop  bottom: ["score_pool3", "upscore_pool4"]  axis: 2
        offset: 9 }
layer { name: "fuse_pool3"  type: Eltwise  bottom: ["upscore_pool4", "score_pool3c"] }
layer { name: "upscore8"  type: Deconvolution  num_output: 3  kernel_size: 16  stride: 8
        bias_term: false }
layer { name: "score"  type: Crop  bottom: ["upscore8", "data"]  axis: 2  offset: 31 }
"""

#: The spatial size of each blob of voc-fcn8s for a 500x500 input, by Caffe's arithmetic
#: (netdsl on the real voc-fcn8s/deploy.prototxt gives the same sizes): each crop fits,
#: 5 + 34 <= 44, 9 + 70 <= 88, 31 + 500 <= 568.
FCN8S_SIZES = {
    "conv1_1": 698, "pool1": 349, "pool2": 175, "pool3": 88, "pool4": 44, "pool5": 22,
    "fc6": 16, "fc7": 16, "score_fr": 16, "upscore2": 34, "score_pool4": 44,
    "score_pool4c": 34, "upscore_pool4": 70, "score_pool3": 88, "score_pool3c": 70,
    "upscore8": 568, "score": 500,
}


@pytest.fixture
def fcn8s(tmp_path: Path) -> Path:
    p = tmp_path / "fcn8s.net"
    p.write_text(FCN8S)
    return p


def test_fcn8s_score_map_is_the_input_size(fcn8s: Path) -> None:
    table = infer_shapes(netdsl.load(fcn8s, "test"), 1)
    assert {b: table.blobs[b][2:] for b in FCN8S_SIZES} == {
        b: (s, s) for b, s in FCN8S_SIZES.items()}
    assert table.blobs["score"] == (1, 3, 500, 500)
    # any input size: the crops realign the upsampled scores with the image
    for h, w in ((224, 224), (375, 500), (333, 417)):
        t = infer_shapes(netdsl.load(fcn8s, "test"), 1, {"data": (3, h, w)})
        assert t.blobs["score"] == (1, 3, h, w)


def test_fcn8s_runs_and_crops_where_the_net_says(fcn8s: Path) -> None:
    net = netdsl.compile(fcn8s, "test", devices="cpu", seed=0)
    net.eval()
    with torch.no_grad():
        out = net(outputs=["score", "upscore8", "score_pool4", "upscore2", "score_pool4c"],
                  data=torch.randn(1, 3, 500, 500))
    assert tuple(out["score"].shape) == (1, 3, 500, 500)
    assert torch.equal(out["score"], out["upscore8"][:, :, 31:531, 31:531])
    assert torch.equal(out["score_pool4c"], out["score_pool4"][:, :, 5:39, 5:39])


def test_fcn8s_converts_both_ways(fcn8s: Path, tmp_path: Path) -> None:
    proto = tmp_path / "fcn8s.prototxt"
    proto.write_text(net_to_prototxt(fcn8s))
    net, back = convert_both_ways(tmp_path, proto.read_text())
    assert back.count('type: "Crop"') == 3 and "crop_param { offset: 31 }" in back


# --------------------------------------------------------------------------- every new type

#: One Caffe net with every layer type issue 12 added here, BVLC's and the forks'.
ALL_TYPES = """name: "all"
input: "data" input_shape { dim: 2 dim: 6 dim: 9 dim: 9 }
input: "ref" input_shape { dim: 2 dim: 6 dim: 5 dim: 4 }
input: "idx" input_shape { dim: 2 }
input: "sel" input_shape { dim: 2 dim: 1 }
layer { name: "crop" type: "Crop" bottom: "data" bottom: "ref" top: "crop"
        crop_param { axis: 2 offset: 1 offset: 2 } }
layer { name: "clip" type: "Clip" bottom: "data" top: "clip" clip_param { min: -1 max: 1 } }
layers { name: "exp" type: EXP bottom: "data" top: "exp" exp_param { base: 2 scale: 0.5 } }
layer { name: "log" type: "Log" bottom: "exp" top: "log" log_param { base: 10 shift: 1 } }
layers { name: "th" type: THRESHOLD bottom: "data" top: "th" threshold_param { threshold: 0.5 } }
layer { name: "sw" type: "Swish" bottom: "data" top: "sw" swish_param { beta: 2 } }
layers { name: "am" type: ARGMAX bottom: "data" top: "am" argmax_param { top_k: 3 } }
layer { name: "br" type: "BatchReindex" bottom: "data" bottom: "idx" top: "br" }
layer { name: "fi" type: "Filter" bottom: "data" bottom: "ref" bottom: "sel" top: "fi" top: "fi2" }
layer { name: "tile" type: "Tile" bottom: "data" top: "tile" tile_param { axis: 2 tiles: 3 } }
layer { name: "red" type: "Reduction" bottom: "data" top: "red"
        reduction_param { operation: SUMSQ axis: 1 } }
layer { name: "par" type: "Parameter" top: "par" parameter_param { shape { dim: 4 dim: 5 } } }
layer { name: "emb" type: "Embed" bottom: "idx" top: "emb"
        embed_param { num_output: 7 input_dim: 10 } }
layers { name: "i2c" type: IM2COL bottom: "data" top: "i2c" convolution_param { kernel_size: 3 } }
layer { name: "spp" type: "SPP" bottom: "data" top: "spp" spp_param { pyramid_height: 3 } }
layers { name: "h5" type: HDF5_OUTPUT bottom: "data" bottom: "ref"
         hdf5_output_param { file_name: "out.h5" } }
layer { name: "r6" type: "ReLU6" bottom: "data" top: "r6" }
layer { name: "sc" type: "ShuffleChannel" bottom: "data" top: "sc"
        shuffle_channel_param { group: 3 } }
layer { name: "cdw" type: "ConvolutionDepthwise" bottom: "data" top: "cdw"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "dwc" type: "DepthwiseConvolution" bottom: "data" top: "dwc"
        convolution_param { num_output: 6 group: 6 kernel_size: 3 } }
"""


def test_every_new_type_through_netdsl_convert(tmp_path: Path) -> None:
    """``netdsl convert`` (the command) both ways: the .net and the prototxt it writes back
    load with the original's shapes, parameters and typed fields."""
    from netdsl.cli import main

    proto = tmp_path / "all.prototxt"
    proto.write_text(ALL_TYPES)
    net, back = tmp_path / "all.net", tmp_path / "back.prototxt"
    assert main(["convert", str(proto), "-o", str(net)]) == 0
    assert main(["convert", str(net), "-o", str(back)]) == 0
    for phase in ("train", "test"):
        want = infer_shapes(netdsl.load(proto, phase))
        for other in (net, back):
            got = infer_shapes(netdsl.load(other, phase))
            assert got.blobs == want.blobs and got.total_params == want.total_params
    # Parameter 4x5; Embed 10x7 and 7 biases; the two depthwise: 6x1x3x3 and 6 biases each
    assert want.total_params == 20 + (70 + 7) + 2 * (54 + 6)
    compiled = netdsl.compile(back, "test", devices="cpu", seed=0)
    out = compiled(data=torch.randn(2, 6, 9, 9), ref=torch.randn(2, 6, 5, 4),
                   idx=torch.tensor([1.0, 0.0]), sel=torch.tensor([[0.0], [1.0]]))
    assert tuple(out["fi"].shape) == (1, 6, 9, 9) and tuple(out["spp"].shape) == (2, 6 * 21)


# --------------------------------------------------------------------------- mobile nets


def table(name: str, overrides: dict[str, str] | None = None) -> ShapeTable:
    return infer_shapes(netdsl.load(SPECS / name, "test", overrides))


def shufflenet_counts(mid: list[int], fc_bias: bool) -> tuple[int, int]:
    """Parameters and MACs of ShuffleNet 1x, g = 3, from the paper's Table 1: conv1 3x3/2
    to 24 maps, a 3x3/2 max pool, stages of 4, 8 and 4 units of 240, 480 and 960 maps
    (the first unit of each stride 2, joined to a pool of its input), global pooling, a
    1000-way classifier. ``mid``: the bottleneck of each stage's first unit; the others use
    a quarter of the stage's width. BatchNorm counts its scale and shift (Caffe's Scale)."""
    params, macs, c_in, hw = 3 * 24 * 9 + 2 * 24, 112 * 112 * 24 * 27, 24, 56
    for stage, (width, units) in enumerate(((240, 4), (480, 8), (960, 4))):
        for u in range(units):
            stride = 2 if u == 0 else 1
            out = width - c_in if u == 0 else width
            m = mid[stage] if u == 0 else width // 4
            g1 = 1 if stage == 0 and u == 0 else 3
            hw2 = hw // stride
            params += c_in * m // g1 + 2 * m + m * 9 + 2 * m + m * out // 3 + 2 * out
            macs += hw * hw * c_in * m // g1 + hw2 * hw2 * (m * 9 + m * out // 3)
            c_in, hw = width, hw2
    return params + 960 * 1000 + (1000 if fc_bias else 0), macs + 960 * 1000


def test_shufflenet_against_the_paper_and_the_official_code() -> None:
    t = table("shufflenet.net")
    # megvii-model/ShuffleNet-Series (the authors' code): ShuffleNetV1 1.0x (group=3),
    # FLOPs 138M, #Params 1.9M; its classifier has no bias, Caffe's fc1000 has one.
    official, _ = shufflenet_counts([60, 120, 240], fc_bias=False)
    assert official == 1_864_728 and round(official / 1e6, 1) == 1.9
    assert (t.total_params, t.total_macs) == shufflenet_counts([60, 120, 240], fc_bias=True)
    assert t.total_params == official + 1000
    # the paper: "ShuffleNet 1x" at 140 MFLOPs (multiply-adds); the official count 138M
    assert t.total_macs == 137_460_672 and abs(t.total_macs - 140e6) / 140e6 < 0.02
    assert t.blobs["resx1_concat"] == (1, 240, 28, 28)
    assert t.blobs["resx13_concat"] == (1, 960, 7, 7)
    assert t.blobs["fc1000"] == (1, 1000, 1, 1)


def test_shufflenet_as_farmingyards_caffe_file() -> None:
    """farmingyard/ShuffleNet's shufflenet_1x_g3_deploy.prototxt narrows the first unit of
    each stage to (out - in) / 4: 54, 60, 120 (netdsl shapes on that file: 1,814,734
    parameters, 127,061,304 MACs)."""
    t = table("shufflenet.net", {"mid2": "54", "mid3": "60", "mid4": "120"})
    assert (t.total_params, t.total_macs) == shufflenet_counts([54, 60, 120], fc_bias=True)
    assert (t.total_params, t.total_macs) == (1_814_734, 127_061_304)


def mobilenet_v2_params(extra_expand: bool) -> int:
    """Parameters of MobileNet-v2 1.0 from the paper's Table 2 (t, c, n, s rows), conv
    weights plus BatchNorm's scale and shift, and the 1280 -> 1000 classifier with bias.
    ``extra_expand``: shicai's file gives the t = 1 block a 32 -> 32 expansion too."""
    params, c_in = 3 * 32 * 9 + 2 * 32, 32
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for _ in range(n):
            e = c_in * t
            if t != 1 or extra_expand:
                params += c_in * e + 2 * e
            params += e * 9 + 2 * e + e * c + 2 * c
            c_in = c
    return params + 320 * 1280 + 2 * 1280 + 1280 * 1000 + 1000


def test_mobilenet_v2_against_the_paper_and_shicais_caffe_port() -> None:
    t = table("mobilenet_v2.net")
    # TensorFlow's (and Keras') MobileNetV2 1.0 224: 3,504,872 trainable parameters, which
    # the paper's Table 4 gives as 3.4M
    assert mobilenet_v2_params(extra_expand=False) == 3_504_872
    assert abs(mobilenet_v2_params(extra_expand=False) - 3.4e6) / 3.4e6 < 0.04
    # shicai/MobileNet-Caffe's mobilenet_v2_deploy.prototxt (netdsl shapes on it: 3,505,960)
    assert t.total_params == mobilenet_v2_params(extra_expand=True) == 3_505_960
    assert t.blobs["conv6_4/bn"] == (1, 1280, 7, 7) and t.blobs["prob"] == (1, 1000, 1, 1)
    assert t.blobs["block_4_6"] == (1, 64, 28, 28)  # shicai's stride placement (see the spec)


@pytest.mark.parametrize("spec", ["shufflenet.net", "mobilenet_v2.net"])
def test_mobile_nets_run(spec: str) -> None:
    net = netdsl.compile(SPECS / spec, "test", devices="cpu", seed=0)
    net.eval()
    with torch.no_grad():
        for name, buf in net.named_buffers():  # BatchNorm statistics of a trained net:
            if name.endswith(("variance", "scale_factor")):  # not Caffe's fresh zeros,
                buf.fill_(1.0)  # which scale every map by 1/sqrt(eps), layer after layer
        out = net(data=torch.randn(2, 3, 224, 224))
    (y,) = out.values()
    assert tuple(y.shape) == (2, 1000, 1, 1) and torch.isfinite(y).all()
