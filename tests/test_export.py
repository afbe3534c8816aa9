"""netdsl export: ONNX that passes onnx.checker and, where onnxruntime installs, computes
what torch computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.export import deploy_outputs, export_compiled
from tests.shared import ROOT

onnx = pytest.importorskip("onnx")
SMALL = ROOT / "specs" / "alexnet_small.net"


def test_deploy_outputs_skip_losses() -> None:
    assert deploy_outputs(netdsl.load(SMALL, "test")) == ("fc8",)
    assert deploy_outputs(netdsl.load(SMALL, "train")) == ("fc8",)


def test_export_matches_torch(tmp_path: Path) -> None:
    net = netdsl.compile(SMALL, "test", devices="cpu", seed=3).eval()
    path = export_compiled(net, tmp_path / "small.onnx")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == ["fc8"]
    ort = pytest.importorskip("onnxruntime")
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        want = net(data=x, outputs=["fc8"])["fc8"].numpy()
    (got,) = ort.InferenceSession(str(path)).run(None, {"data": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.onnx"
    assert main(["export", str(SMALL), "-o", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    assert main(["export", str(SMALL), "-o", str(out), "--outputs", "nope"]) == 2
    assert "not a blob" in capsys.readouterr().err


LRN_SPEC = """
name: "lrn"
input { name: "data" shape: [6, 5, 5] }
layer { name: "conv" type: Convolution bottom: "data" num_output: 7 kernel_size: 3 pad: 1
        weight_filler: gaussian(1) }
layer { name: "norm1" type: LRN bottom: "conv" local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }
layer { name: "norm2" type: LRN bottom: "norm1" local_size: 3 alpha: 0.5 beta: 0.6
        norm_region: WITHIN_CHANNEL }
layer { name: "norm3" type: LRN bottom: "norm2" local_size: 9 alpha: 1 beta: 1.3 k: 1 }
"""


def test_lrn_is_onnx_lrn(tmp_path: Path) -> None:
    """Cross-channel LRN becomes ONNX's LRN op (a window larger than the channels too);
    WITHIN_CHANNEL has no ONNX op and stays as traced. onnxruntime computes what torch
    computes. (Not checked with onnx.reference.ReferenceEvaluator: its LRN (onnx 1.23.2)
    loops over the batch axis where it means the channels.)"""
    spec = tmp_path / "lrn.net"
    spec.write_text(LRN_SPEC)
    net = netdsl.compile(spec, "test", devices="cpu", seed=2).eval()
    path = export_compiled(net, tmp_path / "lrn.onnx", outputs=["norm3"])
    model = onnx.load(str(path))
    lrns = [n for n in model.graph.node if n.op_type == "LRN"]
    assert len(lrns) == 2
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in lrns]
    assert attrs[0] == pytest.approx({"size": 5, "alpha": 0.3, "beta": 0.75, "bias": 2.0})
    assert attrs[1] == pytest.approx({"size": 9, "alpha": 1.0, "beta": 1.3, "bias": 1.0})
    assert any(n.op_type == "AveragePool" for n in model.graph.node)  # WITHIN_CHANNEL
    x = torch.randn(3, 6, 5, 5)
    with torch.no_grad():
        want = net(data=x, outputs=["norm3"])["norm3"].numpy()
    ort = pytest.importorskip("onnxruntime")
    (got,) = ort.InferenceSession(str(path)).run(None, {"data": x.numpy()})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_onnx_lrn_is_caffes_formula() -> None:
    """ONNX's LRN on its own (in onnxruntime) against a numpy
    transcription of Caffe's CrossChannelForward_cpu (lrn_layer.cpp): scale = k +
    alpha/size * the sum of squares over the size channels centred on each, zero-padded
    by (size - 1) / 2; top = bottom * scale^-beta."""
    from onnx import TensorProto, helper

    size, alpha, beta, k = 5, 0.7, 0.75, 1.5
    x = np.random.default_rng(1).standard_normal((2, 7, 3, 3)).astype(np.float32)
    pre = (size - 1) // 2
    padded = np.pad(x.astype(np.float64) ** 2, ((0, 0), (pre, pre), (0, 0), (0, 0)))
    scale = k + alpha / size * sum(padded[:, j:j + 7] for j in range(size))
    want = x * scale ** -beta
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=k)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ort = pytest.importorskip("onnxruntime")
    (got,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
