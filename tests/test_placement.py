"""Stage 9: placement of the paper's two-GPU AlexNet, and the errors of impossible ones.

The golden facts come from the paper (Krizhevsky et al. 2012, section 3.2 and figure 2):
"the GPUs communicate only in certain layers": conv3 and the fully connected layers see
the maps of both GPUs, conv2/conv4/conv5 only their own GPU's. Byte counts are the
paper's blob dims times 4 (float32) per image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from netdsl import syntax
from netdsl.build import build
from netdsl.caffe_compat import upgrade
from netdsl.diagnostics import PlacementError
from netdsl.ir import Net
from netdsl.parse import parse_file
from netdsl.placement import Need, Plan, plan
from netdsl.shapes import infer_shapes

#: specs/alexnet.net with its variables written out (resolve is a later stage).
ALEXNET = """
name: "AlexNet"
devices: ["gpu:0", "gpu:1"]
input { name: "data"  shape: [3, 227, 227] }
input { name: "label" shape: [] }
layer { name: "conv1" type: Convolution bottom: "data" num_output: 96 kernel_size: 11 stride: 4
        weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 } }
layer { name: "relu1" type: ReLU bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: LRN bottom: "conv1" local_size: 5 alpha: 5e-4 beta: 0.75 k: 2 }
layer { name: "pool1" type: Pooling bottom: "norm1" pool: MAX kernel_size: 3 stride: 2 }
layer { name: "conv2" type: Convolution bottom: "pool1" num_output: 256 kernel_size: 5 pad: 2
        group: 2 weight_filler { type: "gaussian" std: 0.01 }
        bias_filler { type: "constant" value: 1 } }
layer { name: "relu2" type: ReLU bottom: "conv2" top: "conv2" }
layer { name: "norm2" type: LRN bottom: "conv2" local_size: 5 alpha: 5e-4 beta: 0.75 k: 2 }
layer { name: "pool2" type: Pooling bottom: "norm2" pool: MAX kernel_size: 3 stride: 2 }
layer { name: "conv3" type: Convolution bottom: "pool2" num_output: 384 kernel_size: 3 pad: 1
        weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 } }
layer { name: "relu3" type: ReLU bottom: "conv3" top: "conv3" }
layer { name: "conv4" type: Convolution bottom: "conv3" num_output: 384 kernel_size: 3 pad: 1
        group: 2 weight_filler { type: "gaussian" std: 0.01 }
        bias_filler { type: "constant" value: 1 } }
layer { name: "relu4" type: ReLU bottom: "conv4" top: "conv4" }
layer { name: "conv5" type: Convolution bottom: "conv4" num_output: 256 kernel_size: 3 pad: 1
        group: 2 weight_filler { type: "gaussian" std: 0.01 }
        bias_filler { type: "constant" value: 1 } }
layer { name: "relu5" type: ReLU bottom: "conv5" top: "conv5" }
layer { name: "pool5" type: Pooling bottom: "conv5" pool: MAX kernel_size: 3 stride: 2 }
layer { name: "fc6" type: InnerProduct bottom: "pool5" num_output: 4096
        weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 1 } }
layer { name: "relu6" type: ReLU bottom: "fc6" top: "fc6" }
layer { name: "drop6" type: Dropout bottom: "fc6" top: "fc6" dropout_ratio: 0.5 }
layer { name: "fc7" type: InnerProduct bottom: "fc6" num_output: 4096
        weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 1 } }
layer { name: "relu7" type: ReLU bottom: "fc7" top: "fc7" }
layer { name: "drop7" type: Dropout bottom: "fc7" top: "fc7" dropout_ratio: 0.5 }
layer { name: "fc8" type: InnerProduct bottom: "fc7" num_output: 1000
        weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 } }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["fc8", "label"] }
layer { name: "accuracy" type: Accuracy bottom: ["fc8", "label"] phase: TEST }
"""

F32 = 4


def build_text(text: str, folder: Path, phase: str = "train", name: str = "net.net") -> Net:
    """A spec without variables -> ``ir.Net`` (parse, upgrade, build; no resolve)."""
    path = folder / name
    path.write_text(text)
    file = parse_file(path)
    net = build(syntax.Spec(file.path, upgrade(file).items), phase)
    net.check()
    return net


@pytest.fixture(scope="module")
def alexnet(tmp_path_factory: pytest.TempPathFactory) -> Net:
    return build_text(ALEXNET, tmp_path_factory.mktemp("alexnet"))


@pytest.fixture(scope="module")
def alexnet_plan(alexnet: Net) -> Plan:
    return plan(alexnet, infer_shapes(alexnet, 2))


def test_grouped_convolutions_need_no_transfer(alexnet_plan: Plan) -> None:
    for name in ("conv2", "conv4", "conv5"):
        lp = alexnet_plan.layer(name)
        assert [s.device for s in lp.shards] == ["gpu:0", "gpu:1"]
        assert all(i.kind is Need.NONE for s in lp.shards for i in s.inputs), name
        assert lp.transfers == ()
    assert [s.channels for s in alexnet_plan.layer("conv2").shards] == [(0, 128), (128, 256)]
    # each device reads exactly its own group's input channels
    assert [s.inputs[0].channels for s in alexnet_plan.layer("conv4").shards] == [
        (0, 192), (192, 384)]


@pytest.mark.parametrize("layer,blob,half,bytes_each", [
    ("conv3", "pool2", 128, 128 * 13 * 13 * F32),
    ("fc6", "pool5", 128, 128 * 6 * 6 * F32),
    ("fc7", "fc6", 2048, 2048 * F32),
    ("fc8", "fc7", 2048, 2048 * F32),
])
def test_layers_that_see_both_gpus_gather(alexnet_plan: Plan, layer: str, blob: str, half: int,
                                          bytes_each: int) -> None:
    lp = alexnet_plan.layer(layer)
    s0, s1 = lp.shards
    for shard, other, missing in ((s0, "gpu:1", (half, 2 * half)), (s1, "gpu:0", (0, half))):
        (inp,) = shard.inputs
        assert inp.kind is Need.GATHER
        assert inp.bottom == blob and inp.channels == (0, 2 * half)
        (t,) = inp.transfers
        assert (t.src, t.dst, t.blob, t.channels) == (other, shard.device, blob, missing)
        assert t.bytes_per_image == bytes_each
    assert lp.bytes_per_image == 2 * bytes_each


@pytest.mark.parametrize("layer,blob,side,channels", [
    ("norm1", "conv1", 55, 96), ("norm2", "conv2", 27, 256)])
def test_lrn_gets_halo_channels(alexnet_plan: Plan, layer: str, blob: str, side: int,
                                channels: int) -> None:
    half = channels // 2
    s0, s1 = alexnet_plan.layer(layer).shards
    i0, i1 = s0.inputs[0], s1.inputs[0]
    assert i0.kind is Need.HALO and i1.kind is Need.HALO
    # (local_size - 1) / 2 = 2 channels from the neighbour, none beyond the blob's edge
    assert (i0.channels, i0.halo) == ((0, half + 2), (0, 2))
    assert (i1.channels, i1.halo) == ((half - 2, channels), (2, 0))
    (t0,), (t1,) = i0.transfers, i1.transfers
    assert (t0.src, t0.dst, t0.channels) == ("gpu:1", "gpu:0", (half, half + 2))
    assert (t1.src, t1.dst, t1.channels) == ("gpu:0", "gpu:1", (half - 2, half))
    assert t0.blob == t1.blob == blob
    assert t0.bytes_per_image == 2 * side * side * F32


def test_data_lives_on_the_first_device_and_is_copied(alexnet_plan: Plan) -> None:
    assert alexnet_plan.layer("data").tops[0].parts == (("gpu:0", 0, 3),)
    s0, s1 = alexnet_plan.layer("conv1").shards
    assert s0.inputs[0].kind is Need.NONE
    inp = s1.inputs[0]
    assert inp.kind is Need.COPY
    assert inp.transfers[0].bytes_per_image == 3 * 227 * 227 * F32
    assert (inp.transfers[0].src, inp.transfers[0].dst) == ("gpu:0", "gpu:1")


def test_elementwise_layers_follow_their_input(alexnet_plan: Plan) -> None:
    for name in ("relu1", "pool1", "relu5", "pool5", "relu6", "drop6", "drop7"):
        lp = alexnet_plan.layer(name)
        assert [s.device for s in lp.shards] == ["gpu:0", "gpu:1"], name
        assert lp.transfers == ()
    assert [s.channels for s in alexnet_plan.layer("pool5").shards] == [(0, 128), (128, 256)]


def test_loss_gathers_onto_its_first_device(alexnet_plan: Plan) -> None:
    (shard,) = alexnet_plan.layer("loss").shards
    assert shard.device == "gpu:0" and shard.channels is None
    fc8, label = shard.inputs
    assert fc8.kind is Need.GATHER
    assert fc8.transfers[0].channels == (500, 1000)
    assert fc8.bytes_per_image == 500 * F32
    assert label.kind is Need.NONE


def test_total_traffic(alexnet_plan: Plan) -> None:
    expected = (3 * 227 * 227 + 2 * (2 * 55 * 55) + 2 * (2 * 27 * 27) + 2 * 128 * 13 * 13
                + 2 * 128 * 36 + 2 * 2048 + 2 * 2048 + 500) * F32
    assert alexnet_plan.bytes_per_image == expected


def test_shards_on_one_physical_device_are_merged(alexnet: Net) -> None:
    p = plan(alexnet, infer_shapes(alexnet, 2), {"gpu:0": "cpu", "gpu:1": "cpu"})
    assert p.devices == ("cpu",) and not p.logical
    assert p.transfers == ()
    for lp in p.layers:
        assert len(lp.shards) == 1, lp.name
    assert p.layer("conv2").shards[0].channels == (0, 256)
    assert p.layer("conv2").shards[0].logical == ("gpu:0", "gpu:1")


def test_one_to_one_device_map_keeps_the_plan(alexnet: Net, alexnet_plan: Plan) -> None:
    p = plan(alexnet, infer_shapes(alexnet, 2), {"gpu:0": "cuda:0", "gpu:1": "cuda:1"})
    assert p.devices == ("cuda:0", "cuda:1")
    assert p.bytes_per_image == alexnet_plan.bytes_per_image
    assert p.layer("conv3").shards[1].inputs[0].transfers[0].src == "cuda:0"


def test_unmapped_device_is_an_error(alexnet: Net) -> None:
    with pytest.raises(PlacementError, match="gpu:1"):
        plan(alexnet, infer_shapes(alexnet, 2), {"gpu:0": "cpu"})


def test_num_output_not_divisible_is_a_placement_error(tmp_path: Path) -> None:
    text = ALEXNET.replace("num_output: 4096", "num_output: 4095", 1)  # fc6
    net = build_text(text, tmp_path)
    with pytest.raises(PlacementError) as e:
        plan(net, infer_shapes(net, 1))
    assert "fc6" in e.value.message and "4095" in e.value.message
    assert e.value.span.path.endswith("net.net")
    line = (tmp_path / "net.net").read_text().splitlines()[e.value.span.line - 1]
    assert "num_output: 4095" in line[e.value.span.col - 1:]


def test_groups_not_divisible_between_devices(tmp_path: Path) -> None:
    text = """
    devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [6, 8, 8] }
    layer { name: "conv" type: Convolution bottom: "data" num_output: 6 kernel_size: 3
            group: 3 }
    """
    net = build_text(text, tmp_path)
    with pytest.raises(PlacementError, match="3 groups"):
        plan(net, infer_shapes(net, 1))
    # the same layer on one device is fine
    one = build_text(text.replace('["gpu:0", "gpu:1"]', '["gpu:0"]'), tmp_path, name="one.net")
    assert plan(one, infer_shapes(one, 1)).transfers == ()


def test_copy_is_made_once_for_several_readers(tmp_path: Path) -> None:
    text = """
    devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [3, 8, 8] }
    layer { name: "a" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 }
    layer { name: "b" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 }
    layer { name: "ab" type: Concat bottom: ["a", "b"] }
    """
    net = build_text(text, tmp_path)
    p = plan(net, infer_shapes(net, 1))
    assert p.layer("a").shards[1].inputs[0].kind is Need.COPY
    assert p.layer("b").shards[1].inputs[0].kind is Need.NONE  # reuses a's copy
    a, b = p.layer("ab").shards[0].inputs
    assert a.kind is b.kind is Need.GATHER
    assert a.transfers[0].channels == (2, 4)


def test_layer_pinned_to_another_device(tmp_path: Path) -> None:
    text = """
    devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [4] }
    layer { name: "ip" type: InnerProduct bottom: "data" num_output: 2 devices: ["gpu:1"] }
    """
    net = build_text(text, tmp_path)
    p = plan(net, infer_shapes(net, 1))
    (shard,) = p.layer("ip").shards
    assert shard.device == "gpu:1"
    assert shard.inputs[0].kind is Need.COPY and shard.inputs[0].bytes_per_image == 16
    # the output is gathered back to the net's first device
    (out,) = p.outputs
    assert out.kind is Need.COPY and out.transfers[0].src == "gpu:1"


def test_json_and_table(alexnet_plan: Plan) -> None:
    js = alexnet_plan.to_json()
    json.dumps(js)
    conv3 = next(lp for lp in js["layers"] if lp["name"] == "conv3")
    assert conv3["shards"][0]["inputs"][0]["kind"] == "gather"
    assert conv3["shards"][0]["inputs"][0]["transfers"][0]["bytes_per_image"] == 86528
    assert js["total_bytes_per_image"] == alexnet_plan.bytes_per_image
    console = Console(record=True, width=160)
    alexnet_plan.print(console)
    text = console.export_text()
    assert "conv3" in text and "gather" in text and "halo" in text and "86,528" in text


def test_single_device_caffe_net_has_no_transfers(shared_caffe: Path) -> None:
    path = shared_caffe / "prototxt" / "mnist__lenet.prototxt"
    file = parse_file(path)
    net = build(syntax.Spec(file.path, upgrade(file).items), "test")
    p = plan(net, infer_shapes(net, 1))
    assert p.devices == ("gpu:0",) and p.transfers == ()


def test_shipped_alexnet_spec_places_like_the_paper() -> None:
    """specs/alexnet.net itself, once the resolve stage exists."""
    pytest.importorskip("netdsl.resolve")
    import netdsl

    root = Path(__file__).resolve().parent.parent
    net = netdsl.load(root / "specs" / "alexnet.net", "train")
    p = plan(net, infer_shapes(net, 2))
    assert p.layer("conv2").transfers == ()
    assert p.layer("conv3").bytes_per_image == 2 * 128 * 13 * 13 * F32
