"""Parameter (BVLC caffe's parameter_layer.hpp): a learnable blob as a top."""

from __future__ import annotations

from pathlib import Path

import torch

import netdsl
from netdsl.shapes import infer_shapes

from .helpers import kind, params, params_from_text, shape_error, shapes
from .roundtrip import convert_both_ways


def test_shape_is_the_blob_shape() -> None:
    p = params_from_text("Parameter", "parameter_param { shape { dim: 3 dim: 4 } }")
    assert p.shape == (3, 4)
    assert shapes("Parameter", (), shape=(3, 4)) == ((3, 4),)
    assert shapes("Parameter", ()) == ((),)  # an empty BlobShape: a scalar, as in Caffe
    assert kind("Parameter").param_shapes(params("Parameter", shape=(3, 4)), ()) == {
        "value": (3, 4)}
    shape_error("Parameter", (), match="negative", field="shape", shape=(2, -1))


def test_its_top_is_the_blob_and_learns(tmp_path: Path) -> None:
    spec = tmp_path / "p.net"
    spec.write_text("""
input { name: "x" shape: [4] }
layer { name: "w" type: Parameter shape: [2, 4] }
layer { name: "prod" type: Eltwise bottom: ["x", "x"] operation: PROD }
layer { name: "loss" type: EuclideanLoss bottom: ["w", "prod"] }
""")
    table = infer_shapes(netdsl.load(spec, "train"), 2)
    assert table.blobs["w"] == (2, 4) and table.total_params == 8
    net = netdsl.compile(spec, "train", devices="cpu", seed=0, batch=2)
    w = dict(net.named_parameters())
    (name,) = [n for n in w if n.endswith("value")]
    assert torch.equal(w[name], torch.zeros(2, 4))  # Caffe's fresh blob is zeros
    out = net(x=torch.ones(2, 4))
    out["loss"].backward()
    assert w[name].grad is not None and w[name].grad.abs().sum() > 0


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 2 dim: 5 } } }
""")
    assert "type: Parameter  shape: [2, 5]" in net
    assert "parameter_param {" in back and "shape { dim: 2 dim: 5 }" in back
