"""Segmentation nets built from the forks' layers, checked against outside facts.

SegNet (Badrinarayanan, Kendall & Cipolla, 2015) scores every pixel: its decoder undoes
each max pooling of its encoder with that pooling's argmax mask, so a 360x480 CamVid image
gives 360x480 maps of class scores. ENet (Paszke et al., 2016) does the same with an
initial block (a strided convolution beside a max pooling), PReLU, SegNet's BN and
Upsample in its bottlenecks, and a last transposed convolution; TimoSaemann/ENet trains it
on 512x1024 Cityscapes images. specs/segnet_small.net is a narrow SegNet-Basic; the
other nets here are written as those projects' prototxt files write them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.ir import Net
from netdsl.shapes import infer_shapes

ROOT = Path(__file__).resolve().parent.parent
SEGNET_SMALL = ROOT / "specs" / "segnet_small.net"


def _blobs(net: Net, inputs: dict[str, tuple[int, ...]] | None = None
           ) -> dict[str, tuple[int, ...]]:
    return dict(infer_shapes(net, None, inputs or {}).blobs)


def _small(height: int = 48, width: int = 64) -> Net:
    return netdsl.load(SEGNET_SMALL, "train", {"height": str(height), "width": str(width)})


# --------------------------------------------------------------------------- SegNet


@pytest.mark.parametrize("phase", ["train", "test"])
def test_segnet_small_scores_every_pixel_of_a_camvid_image(phase: str) -> None:
    net = netdsl.load(SEGNET_SMALL, phase)
    blobs = _blobs(net)
    assert blobs["data"] == (1, 3, 360, 480)
    assert blobs["conv_classifier"] == (1, 11, 360, 480)  # CamVid's 11 classes, per pixel
    pooled = [blobs[f"pool{i}"][2:] for i in (1, 2, 3, 4)]
    assert pooled == [(180, 240), (90, 120), (45, 60), (23, 30)]  # 45 / 2 rounds up
    for i in (1, 2, 3, 4):
        assert blobs[f"pool{i}_mask"] == blobs[f"pool{i}"]
        assert blobs[f"upsample{i}"][2:] == blobs[f"conv{i}"][2:]  # back to the encoder's size
    types = {lay.type for lay in net.layers}
    assert {"BN", "Upsample", "Pooling"} <= types


@pytest.mark.parametrize("hw", [(256, 320), (512, 640), (720, 960)])
def test_segnet_small_keeps_other_sizes_divisible_by_8(hw: tuple[int, int]) -> None:
    blobs = _blobs(_small(*hw))
    assert blobs["conv_classifier"][2:] == hw


def test_segnet_small_unpools_at_the_encoders_maxima() -> None:
    """Forward and backward at 48x64: each Upsample's top is zero but where the mirrored
    pooling found its maxima, which hold the decoder's values."""
    net = netdsl.compile(_small(), "train", devices="cpu", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 48, 64, generator=g, dtype=torch.float64)
    label = torch.randint(0, 12, (2, 1, 48, 64), generator=g).to(torch.float64)
    wanted = ["loss", "conv_classifier", "pool4", "pool4_mask", "upsample4",
              "conv_decode2", "pool1_mask", "upsample1"]
    out = net(outputs=wanted, data=x, label=label)
    assert out["conv_classifier"].shape == (2, 11, 48, 64)
    for top, values, mask in (("upsample4", "pool4", "pool4_mask"),
                              ("upsample1", "conv_decode2", "pool1_mask")):
        up, v, m = out[top], out[values], out[mask]
        rebuilt = torch.zeros_like(up).flatten(2).scatter(2, m.long().flatten(2), v.flatten(2))
        assert torch.equal(up, rebuilt.reshape(up.shape)), top
    loss = out["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name



def test_segnet_small_is_one_graph_under_torch_compile(dynamo: dict) -> None:
    """BN, the pooling masks and Upsample trace without a graph break; aot_eager also
    traces the backward (Upsample's own gradient): same loss and gradients as eager."""
    net = netdsl.compile(_small(), "train", devices="cpu", seed=0,
                         torch_compile={"backend": dynamo["backend"]})
    x = torch.randn(2, 3, 48, 64)
    label = torch.randint(0, 12, (2, 1, 48, 64)).float()
    net(data=x, label=label)["loss"].backward()
    assert len(dynamo["graphs"]) == 1
    assert not dynamo["counters"]["graph_break"], dict(dynamo["counters"]["graph_break"])

    eager = netdsl.compile(_small(), "train", devices="cpu", seed=0, dtype=torch.float64)
    aot = netdsl.compile(_small(), "train", devices="cpu", seed=0, dtype=torch.float64,
                         torch_compile={"backend": "aot_eager"})
    feed = {"data": x.double(), "label": label.double()}
    a, b = eager(**feed)["loss"], aot(**feed)["loss"]
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b)
    for (name, p), q in zip(eager.named_parameters(), aot.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def _segnet_basic(bn: str, upsample4: str) -> str:
    """SegNet-Basic as alexgkendall/SegNet-Tutorial's Models/segnet_basic_*.prototxt
    write it: a DenseImageData layer without a size, LRN, four 7x7 64-map encoder
    stages (BN in place, ReLU, 2x2 max pooling with its mask), four decoder stages
    (Upsample by the mask, 7x7 convolution, BN) and a 1x1 classifier over 11 classes.
    (Its loss_param's weight_by_label_freqs/class_weighting, a SegNet extension of
    SoftmaxWithLoss, are left out here.)"""
    bn_block = ('bn_param { scale_filler { type: "constant" value: 1 } '
                f'shift_filler {{ type: "constant" value: 0.001 }} {bn} }}')

    def conv(name: str, bottom: str, n: int = 64, k: int = 7, pad: int = 3) -> str:
        return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" '
                f'top: "{name}" param {{ lr_mult: 1 decay_mult: 1 }} '
                f"param {{ lr_mult: 2 decay_mult: 0 }} convolution_param {{ num_output: {n} "
                f'kernel_size: {k} pad: {pad} weight_filler {{ type: "msra" }} '
                'bias_filler { type: "constant" } } }\n'
                f'layer {{ bottom: "{name}" top: "{name}" name: "{name}_bn" type: "BN" '
                f"{bn_block} }}\n")

    text = ('name: "segnet"\nlayer { name: "data" type: "DenseImageData" top: "data" '
            'top: "label" dense_image_data_param { source: "/SegNet/CamVid/train.txt" '
            "batch_size: 4 shuffle: true } }\n"
            'layer { name: "norm" type: "LRN" bottom: "data" top: "norm" '
            "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }\n")
    bottom = "norm"
    for i in (1, 2, 3, 4):
        text += conv(f"conv{i}", bottom)
        text += (f'layer {{ name: "relu{i}" type: "ReLU" bottom: "conv{i}" top: "conv{i}" }}\n'
                 f'layer {{ name: "pool{i}" type: "Pooling" bottom: "conv{i}" top: "pool{i}" '
                 f'top: "pool{i}_mask" pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\n')
        bottom = f"pool{i}"
    for i in (4, 3, 2, 1):
        extra = upsample4 if i == 4 else ""
        text += (f'layer {{ name: "upsample{i}" type: "Upsample" bottom: "{bottom}" '
                 f'bottom: "pool{i}_mask" top: "upsample{i}" '
                 f"upsample_param {{ scale: 2 {extra} }} }}\n")
        text += conv(f"conv_decode{i}", f"upsample{i}")
        bottom = f"conv_decode{i}"
    text += conv("conv_classifier", bottom, n=11, k=1, pad=0).split("\n")[0] + "\n"
    text += ('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv_classifier" '
             'bottom: "label" top: "loss" loss_param { ignore_label: 11 } }\n')
    return text


@pytest.mark.parametrize("bn, upsample4", [("", "pad_out_h: true"),
                                           ("bn_mode: INFERENCE", "upsample_h: 45 upsample_w: 60")])
def test_segnet_basic_as_its_prototxt_writes_it(tmp_path: Path, bn: str, upsample4: str
                                                ) -> None:
    proto = tmp_path / "segnet_basic.prototxt"
    proto.write_text(_segnet_basic(bn, upsample4))
    net = netdsl.load(proto, "train")
    table = infer_shapes(net, None, {"data": (3, 360, 480)})  # CamVid's images
    blobs = table.blobs
    assert blobs["data"] == (4, 3, 360, 480) and blobs["label"] == (4, 1, 360, 480)
    assert blobs["pool4"] == (4, 64, 23, 30) and blobs["upsample4"] == (4, 64, 45, 60)
    assert blobs["conv_classifier"] == (4, 11, 360, 480)
    # conv1 3*49*64 + 64, conv2-4 and the four decoders 64*49*64 + 64 each, the classifier
    # 64*11 + 11, and eight BN layers of 2 * 64
    assert table.total_params == 9_472 + 7 * 200_768 + 715 + 8 * 128 == 1_416_587
    assert table.of("conv1_bn").blobs == {"scale": (1, 64, 1, 1), "shift": (1, 64, 1, 1)}


# --------------------------------------------------------------------------- ENet

def _bn(name: str, bottom: str) -> str:
    return (f'layer {{ name: "{name}" type: "BN" bottom: "{bottom}" top: "{name}" '
            "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 decay_mult: 0 } "
            'bn_param { scale_filler { type: "constant" value: 1 } '
            'shift_filler { type: "constant" value: 0.001 } bn_mode: LEARN } }\n')


def _conv(name: str, bottom: str, n: int, k: int, stride: int = 1, pad: int = 0,
          kind: str = "Convolution", bias: bool = False) -> str:
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{name}" '
            f"convolution_param {{ num_output: {n} bias_term: {str(bias).lower()} "
            f"kernel_size: {k} stride: {stride} pad: {pad} "
            'weight_filler { type: "msra" } } }\n')


def _act(name: str, bottom: str, kind: str = "PReLU") -> str:
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{name}" }}\n'


ENET = (
    'name: "ENet"\n'
    'layer { name: "data" type: "DenseImageData" top: "data" top: "label" '
    'dense_image_data_param { source: "train.txt" batch_size: 3 new_height: %d '
    "new_width: %d } }\n"
    # initial block: 13 3x3/2 filters beside a 2x2 max pooling, concatenated to 16 maps
    + _conv("conv0_1", "data", 13, 3, stride=2, pad=1, bias=True)
    + 'layer { name: "pool0_1" type: "Pooling" bottom: "data" top: "pool0_1" '
    "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n"
    'layer { name: "concat0_1" type: "Concat" bottom: "conv0_1" bottom: "pool0_1" '
    'top: "concat0_1" concat_param { axis: 1 } }\n'
    + _bn("bn0_1", "concat0_1") + _act("prelu0_1", "bn0_1")
    # downsampling bottleneck 1.0: max pooling with its mask (main), 2x2/2 -> 3x3 -> 1x1
    + _conv("conv1_0_0", "prelu0_1", 16, 2, stride=2) + _bn("bn1_0_0", "conv1_0_0")
    + _act("prelu1_0_0", "bn1_0_0")
    + _conv("conv1_0_1", "prelu1_0_0", 16, 3, pad=1, bias=True) + _bn("bn1_0_1", "conv1_0_1")
    + _act("prelu1_0_1", "bn1_0_1")
    + _conv("conv1_0_2", "prelu1_0_1", 64, 1) + _bn("bn1_0_2", "conv1_0_2")
    + 'layer { name: "pool1_0_4" type: "Pooling" bottom: "prelu0_1" top: "pool1_0_4" '
    'top: "pool1_0_4_mask" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
    + _conv("conv1_0_4", "pool1_0_4", 64, 1) + _bn("bn1_0_4", "conv1_0_4")
    + 'layer { name: "eltwise1_0_4" type: "Eltwise" bottom: "bn1_0_2" bottom: "bn1_0_4" '
    'top: "eltwise1_0_4" }\n'
    + _act("prelu1_0_4", "eltwise1_0_4")
    # upsampling bottleneck 5.0: Upsample by pool1_0_4's mask (main), 1x1 -> deconv -> 1x1
    + _conv("conv5_0_0", "prelu1_0_4", 4, 1) + _bn("bn5_0_0", "conv5_0_0")
    + _act("relu5_0_0", "bn5_0_0", "ReLU")
    + _conv("deconv5_0_1", "relu5_0_0", 4, 2, stride=2, kind="Deconvolution", bias=True)
    + _bn("bn5_0_1", "deconv5_0_1") + _act("relu5_0_1", "bn5_0_1", "ReLU")
    + _conv("conv5_0_2", "relu5_0_1", 16, 1) + _bn("bn5_0_2", "conv5_0_2")
    + _conv("conv5_0_4", "prelu1_0_4", 16, 1) + _bn("bn5_0_4", "conv5_0_4")
    + 'layer { name: "upsample5_0_4" type: "Upsample" bottom: "bn5_0_4" '
    'bottom: "pool1_0_4_mask" top: "upsample5_0_4" upsample_param { scale: 2 } }\n'
    'layer { name: "eltwise5_0_4" type: "Eltwise" bottom: "bn5_0_2" '
    'bottom: "upsample5_0_4" top: "eltwise5_0_4" }\n'
    + _act("relu5_0_4", "eltwise5_0_4", "ReLU")
    # full-resolution scores: a 2x2/2 transposed convolution over Cityscapes' 19 classes
    + _conv("deconv6_0_0", "relu5_0_4", 19, 2, stride=2, kind="Deconvolution", bias=True)
    + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "deconv6_0_0" bottom: "label" '
    'top: "loss" loss_param { ignore_label: 255 } }\n'
)


def test_enet_blocks_score_every_pixel_of_a_cityscapes_image(tmp_path: Path) -> None:
    proto = tmp_path / "enet.prototxt"
    proto.write_text(ENET % (512, 1024))
    blobs = _blobs(netdsl.load(proto, "train"))
    assert blobs["data"] == (3, 3, 512, 1024) and blobs["label"] == (3, 1, 512, 1024)
    assert blobs["concat0_1"] == (3, 16, 256, 512)
    assert blobs["pool1_0_4_mask"] == blobs["pool1_0_4"] == (3, 16, 128, 256)
    assert blobs["upsample5_0_4"] == (3, 16, 256, 512)
    assert blobs["deconv6_0_0"] == (3, 19, 512, 1024)


def test_enet_blocks_run(tmp_path: Path) -> None:
    proto = tmp_path / "enet.prototxt"
    proto.write_text(ENET % (32, 64))
    net = netdsl.compile(proto, "train", devices="cpu", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 64, generator=g, dtype=torch.float64)
    label = torch.randint(0, 19, (2, 1, 32, 64), generator=g).to(torch.float64)
    out = net(outputs=["loss", "deconv6_0_0"], data=x, label=label)
    assert out["deconv6_0_0"].shape == (2, 19, 32, 64)
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in net.parameters())
