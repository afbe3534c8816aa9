"""Nets shipped with a 1x1 placeholder input that the application resizes (OpenPose's
``input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1``) load as they do in Caffe: its
shape rules check no window against its input, so each size is Caffe's formula, with a
warning here; ``--input`` gives the real size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import collect_warnings
from netdsl.shapes import infer_shapes


def _conv(name: str, bottom: str, n: int, k: int, pad: int) -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {n} kernel_size: {k} pad: {pad} }} }}\n'
            f'layer {{ name: "{name}_relu" type: "ReLU" bottom: "{name}" top: "{name}" }}\n')


def _pool(name: str, bottom: str) -> str:
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}"\n'
            f'  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\n')


#: OpenPose's pose_deploy in small: a VGG front (3x3 convs, 2x2 pools, /8) and a stage of
#: 7x7 convs, on a 1x1 placeholder.
OPENPOSE_LIKE = (
    'input: "image"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 1\ninput_dim: 1\n'
    + _conv("conv1_1", "image", 8, 3, 1) + _pool("pool1", "conv1_1")
    + _conv("conv2_1", "pool1", 8, 3, 1) + _pool("pool2", "conv2_1")
    + _conv("conv3_1", "pool2", 8, 3, 1) + _pool("pool3", "conv3_1")
    + _conv("conv4_1", "pool3", 8, 3, 1)
    + _conv("Mconv1_stage2", "conv4_1", 8, 7, 3)
    + 'layer { name: "Mconv7_stage2" type: "Convolution" bottom: "Mconv1_stage2"\n'
      '  top: "heatmaps" convolution_param { num_output: 19 kernel_size: 1 } }\n'
)


@pytest.fixture
def openpose(tmp_path: Path) -> Path:
    path = tmp_path / "pose_deploy.prototxt"
    path.write_text(OPENPOSE_LIKE)
    return path


def test_a_placeholder_input_loads_with_warnings(openpose: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", str(openpose), "--format", "json"]) == 0
    out = capsys.readouterr()
    shapes = {lay["name"]: lay["top_shapes"] for lay in json.loads(out.out)["layers"]}
    # 2x2 pools on 1x1: ceil((1 - 2) / 2) + 1 = 1 in Caffe; 3x3 and 7x7 convs are padded
    assert shapes["pool3"] == [[1, 8, 1, 1]]
    assert shapes["Mconv7_stage2"] == [[1, 19, 1, 1]]
    warnings = [ln for ln in out.err.splitlines() if ": warning: " in ln]
    assert [w.split(": warning: ")[1].split(":")[0] for w in warnings] == [
        "Pooling 'pool1'", "Pooling 'pool2'", "Pooling 'pool3'"]
    first = warnings[0]
    assert first.startswith(f"{openpose}:10:29: warning: Pooling 'pool1': kernel 2 is larger "
                            "than the padded input 1; Caffe computes side 1 with its formula "
                            "and goes on")
    assert "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }" in out.err  # quoted
    assert "hint: if the input is a placeholder that the application resizes, give the real " \
           "size: --input NAME=C,H,W" in out.err
    assert "error" not in out.err


def test_input_gives_the_real_size(openpose: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", str(openpose), "--format", "json", "--input", "image=3,368,368"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    shapes = {lay["name"]: lay["top_shapes"] for lay in json.loads(out.out)["layers"]}
    assert shapes["image"] == [[1, 3, 368, 368]]
    assert shapes["Mconv7_stage2"] == [[1, 19, 46, 46]]  # OpenPose's 46x46 heat maps


def test_the_api_collects_the_warnings(openpose: Path) -> None:
    net = netdsl.load(openpose, "test")
    with collect_warnings() as ws:
        infer_shapes(net)
    assert [w.span.line for w in ws] == [10, 15, 20]
    with collect_warnings() as ws:
        table = infer_shapes(net, inputs={"image": (3, 64, 48)})
    assert ws == [] and table.of("Mconv7_stage2").tops == ((1, 19, 8, 6),)


def test_deconvolution_with_nothing_left_warns_as_caffe_goes_on(tmp_path: Path) -> None:
    """DeconvolutionLayer::compute_output_shape: 1 * (1 - 1) + 2 - 2 * 1 = 0, which Caffe
    takes (an empty blob); netdsl goes on with 1."""
    path = tmp_path / "d.prototxt"
    path.write_text('input: "x" input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1\n'
                    'layer { name: "up" type: "Deconvolution" bottom: "x" top: "up"\n'
                    '  convolution_param { num_output: 2 kernel_size: 2 pad: 1 } }\n')
    with collect_warnings() as ws:
        table = infer_shapes(netdsl.load(path, "test"))
    assert table.of("up").tops == ((1, 2, 1, 1),)
    (w,) = ws
    assert (w.span.line, w.span.col) == (3, 52)  # pad: 1
    assert w.message == ("Deconvolution 'up': the padding 1 leaves no output (input 1, stride "
                         "1, kernel extent 2); Caffe's formula gives side 0, an empty blob in "
                         "Caffe; netdsl goes on with side 1")


def test_a_warning_in_a_repeat_says_where_it_was_expanded(tmp_path: Path) -> None:
    path = tmp_path / "r.net"
    path.write_text('input { name: "x" shape: [2, 1, 1] }\n'
                    'repeat 2 as i {\n'
                    '  layer { name: "p${i}" type: Pooling kernel_size: 2 stride: 2 }\n'
                    '}\n')
    with collect_warnings() as ws:
        infer_shapes(netdsl.load(path))
    assert [w.message.split(":")[0] for w in ws] == ["Pooling 'p0'", "Pooling 'p1'"]
    assert all(any("repeat" in note for note, _ in w.notes) for w in ws)
