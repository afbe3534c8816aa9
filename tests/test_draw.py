"""netdsl draw: devices as clusters, shapes on edges, transfers dashed with their bytes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.draw import to_dot
from netdsl.placement import plan
from netdsl.shapes import infer_shapes
from tests.shared import ROOT

ALEXNET = ROOT / "specs" / "alexnet.net"


def alexnet_dot() -> str:
    net = netdsl.load(ALEXNET, "test")
    table = infer_shapes(net, batch=1)
    return to_dot(table, plan(net, table))


def test_devices_are_clusters() -> None:
    dot = alexnet_dot()
    assert len(re.findall(r"subgraph cluster_\d", dot)) == 2
    assert "label=\"gpu:0\"" in dot and "label=\"gpu:1\"" in dot


def test_transfers_are_dashed_with_bytes() -> None:
    dot = alexnet_dot()
    dashed = [ln for ln in dot.splitlines() if "style=dashed" in ln]
    into = {re.search(r'-> "(\w+)@', ln).group(1) for ln in dashed}
    assert {"conv3", "fc6", "fc7", "fc8"} <= into
    assert not {"conv2", "conv4", "conv5"} & into  # group == devices: nothing moves
    # conv3 gathers the other device's half of pool2: 128 x 13 x 13 floats per image
    assert any("conv3@" in ln and "86,528 B/image" in ln for ln in dashed)


def test_shard_shapes_on_edges() -> None:
    dot = alexnet_dot()
    assert '"conv1@gpu_0" -> "relu1@gpu_0" [label="1×48×55×55"]' in dot


def test_cli_writes_dot_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.dot"
    assert main(["draw", str(ALEXNET), "-o", str(out)]) == 0
    assert out.read_text().startswith("digraph")


def test_cli_bad_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["draw", str(ALEXNET), "-o", str(tmp_path / "net.txt")]) == 1
    assert "cannot draw" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_cli_renders_svg(tmp_path: Path) -> None:
    out = tmp_path / "net.svg"
    assert main(["draw", str(ALEXNET), "-o", str(out)]) == 0
    assert "<svg" in out.read_text()
