"""Shape inference against outside facts: the AlexNet paper, Caffe's printed shapes,
and Caffe's pooling arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import netdsl
from netdsl.caffe_math import pooled_size
from netdsl.shapes import infer_shapes
from tests.shared import DB_INPUTS, ROOT, caffe_params

ALEXNET = ROOT / "specs" / "alexnet.net"

# The paper's output maps (Krizhevsky et al. 2012, section 3.5 and figure 2), per image.
PAPER_MAPS = {
    "conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27),
    "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
    "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,),
    "fc8": (1000,),
}


def test_alexnet_paper_dims_and_counts() -> None:
    net = netdsl.load(ALEXNET, "test")
    net.check()
    table = infer_shapes(net, batch=1)
    for layer, dims in PAPER_MAPS.items():
        assert table.of(layer).tops[0] == (1, *dims), layer
    assert table.total_params == 60_965_224
    assert table.total_macs == 724_406_816
    assert table.of("conv2").blobs["weight"] == (256, 48, 5, 5)
    assert table.of("conv3").blobs["weight"] == (384, 256, 3, 3)


def test_alexnet_every_layer_on_both_devices() -> None:
    net = netdsl.load(ALEXNET, "train")
    assert net.devices == ("gpu:0", "gpu:1")
    for lay in net.layers:
        assert lay.devices == ("gpu:0", "gpu:1"), lay.name
    groups = {lay.name: lay.params.group for lay in net.layers if lay.type == "Convolution"}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}


def test_alexnet_paper_lrn_and_pooling() -> None:
    net = netdsl.load(ALEXNET, "train")
    for name in ("norm1", "norm2"):
        p = net.layer(name).params
        # the paper's alpha 1e-4 on the raw sum is Caffe's alpha / local_size
        assert (p.local_size, p.alpha / p.local_size, p.beta, p.k) == (5, 1e-4, 0.75, 2.0)
    for name in ("pool1", "pool2", "pool5"):
        p = net.layer(name).params
        assert (p.kernel_size, p.stride) == (3, 2)
    assert [lay.params.dropout_ratio for lay in net.layers if lay.type == "Dropout"] == [0.5, 0.5]


def test_batch_scales_shapes_and_macs() -> None:
    net = netdsl.load(ALEXNET, "test")
    t = infer_shapes(net, batch=16)
    assert t.of("conv1").tops[0] == (16, 96, 55, 55)
    assert t.total_macs == 16 * 724_406_816
    assert t.total_params == 60_965_224


def _caffe_logs(shared: Path) -> list[Path]:
    return sorted((shared / "shapes").glob("*.yaml"))


def test_shapes_caffe_printed(shared_caffe: Path) -> None:
    logs = _caffe_logs(shared_caffe)
    assert logs
    for log_path in logs:
        log = yaml.safe_load(log_path.read_text())
        proto = shared_caffe / log["prototxt"].split(" ")[0]
        phase = "test" if "TEST" in str(log.get("phase", "")).split(" ")[0] else "train"
        net = netdsl.load(proto, phase)
        net.check()
        inputs = {k: tuple(v) for k, v in DB_INPUTS.get(proto.name, {}).items()}
        table = infer_shapes(net, batch=log["batch"], inputs=inputs)
        ours = [(lay.name, top, list(shape))
                for lay, row in zip(net.layers, table.layers, strict=True)
                for top, shape in zip(lay.tops, row.tops, strict=True)]
        theirs = [(e["layer"], e["top"], list(e["shape"])) for e in log["layers"]]
        assert ours == theirs, log_path.name
        for (_, _, shape), e in zip(ours, log["layers"], strict=True):
            count = 1
            for d in shape:
                count *= d
            assert count == e["count"]


@pytest.mark.parametrize("path", caffe_params("nets"))
def test_every_shared_net_has_shapes(path: Path) -> None:
    for phase in ("train", "test"):
        net = netdsl.load(path, phase)
        net.check()
        table = infer_shapes(net, inputs=DB_INPUTS.get(path.name, {}))
        assert table.total_params > 0
        assert set(net.outputs) <= set(table.blobs)


KNOWN_PARAMS = {  # published parameter counts of the reference nets
    "bvlc_alexnet__deploy.prototxt": 60_965_224,
    "bvlc_reference_caffenet__deploy.prototxt": 60_965_224,
    "vgg16__VGG_ILSVRC_16_layers_deploy.prototxt": 138_357_544,
    "mnist__lenet.prototxt": 431_080,
}


@pytest.mark.parametrize("name, params", sorted(KNOWN_PARAMS.items()))
def test_known_parameter_counts(shared_caffe: Path, name: str, params: int) -> None:
    table = infer_shapes(netdsl.load(shared_caffe / "prototxt" / name, "test"))
    assert table.total_params == params


@pytest.mark.parametrize(
    "size, kernel, stride, pad, expected",
    [
        (55, 3, 2, 0, 27),   # AlexNet pool1: ceil((55 - 3) / 2) + 1
        (13, 3, 2, 0, 6),    # AlexNet pool5
        (6, 3, 2, 1, 4),     # padded, ceil gives 4 and the last window starts inside
        (5, 2, 2, 1, 3),     # padded: ceil gives 4, but (4-1)*2 >= 5+1 clips it to 3
        (7, 1, 3, 0, 3),     # kernel < stride, pad 0: windows at 0, 3, 6
        (8, 2, 3, 0, 3),     # kernel < stride: ceil(6 / 3) + 1, last window 6..7
        (9, 1, 4, 0, 3),     # kernel < stride, skipping pixels
        (112, 3, 2, 0, 56),  # GoogLeNet pool1: ceil(109 / 2) + 1 = 56, no clip without pad
        (4, 3, 2, 1, 3),     # ceil((4 + 2 - 3) / 2) + 1 = 3; (3-1)*2 = 4 < 5: kept
    ],
)
def test_caffe_pooling_arithmetic(size, kernel, stride, pad, expected) -> None:
    assert pooled_size(size, kernel, stride, pad, ceil=True) == expected


def test_floor_round_mode() -> None:
    assert pooled_size(8, 3, 2, 0, ceil=False) == 3
    assert pooled_size(8, 3, 2, 0, ceil=True) == 4


# ------------------------------------------------------------------ warnings, once each

PLACEHOLDER = (
    'input: "x"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 2\ninput_dim: 2\n'
    'layer { name: "pool" type: "Pooling" bottom: "x" top: "p"\n'
    '  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n')


def test_a_warning_is_given_once_per_process(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Each phase's shapes and lowering work the shapes out again: the same warning (same
    layer, message and file) is logged once; another file says it again."""
    from netdsl.diagnostics import collect_warnings
    from netdsl.layers.base import forget_warnings

    forget_warnings()
    path = tmp_path / "n.prototxt"
    path.write_text(PLACEHOLDER)
    with caplog.at_level("WARNING", logger="netdsl"), collect_warnings() as ws:
        for phase in ("train", "test", "train"):
            infer_shapes(netdsl.load(path, phase))
        netdsl.compile(path, "test", "cpu")
    assert [w.message.split(";")[0] for w in ws] == [
        "Pooling 'pool': kernel 3 is larger than the padded input 2"]
    assert len([r for r in caplog.records if "kernel 3 is larger" in r.getMessage()]) == 1
    other = tmp_path / "m.prototxt"
    other.write_text(PLACEHOLDER)
    with collect_warnings() as again:
        infer_shapes(netdsl.load(other, "test"))
    assert len(again) == 1 and again[0].span.path == str(other)
