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
