"""HDF5Output (BVLC caffe's hdf5_output_layer.cpp): a sink; netdsl writes no file."""

from __future__ import annotations

from pathlib import Path

import torch

import netdsl
from netdsl.layers import REGISTRY, TYPES
from netdsl.layers.base import Role

from .helpers import kind, params, params_from_text, shape_error, shapes
from .roundtrip import convert_both_ways


def test_a_sink_with_caffes_checks() -> None:
    assert REGISTRY["HDF5_OUTPUT"] is TYPES["HDF5Output"]
    assert kind("HDF5Output").role is Role.SINK
    assert "writes no file" in kind("HDF5Output").doc
    assert params_from_text("HDF5Output", 'hdf5_output_param { file_name: "o.h5" }'
                            ).file_name == "o.h5"
    assert shapes("HDF5Output", ((4, 3, 2, 2), (4,)), tops=0) == ()
    shape_error("HDF5Output", ((4, 3), (5,)), tops=0, match="same batch")
    shape_error("HDF5Output", ((4, 3, 2, 2, 2), (4,)), tops=0, match="1 to 4 axes")
    assert not kind("HDF5Output").sharding(params("HDF5Output"), ((4, 3), (4,))).computes


def test_compiles_computing_and_writing_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "h.prototxt"
    spec.write_text("""
input: "data" input_shape { dim: 2 dim: 3 }
input: "label" input_shape { dim: 2 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 4 } }
layer { name: "out" type: "HDF5Output" bottom: "ip" bottom: "label"
        hdf5_output_param { file_name: "written.h5" } }
""")
    net = netdsl.compile(spec, "test", devices="cpu", seed=0)
    out = net(data=torch.randn(2, 3), label=torch.zeros(2))
    assert set(out) <= {"ip", "label"}
    assert not (tmp_path / "written.h5").exists() and not Path("written.h5").exists()


def test_convert_both_ways(tmp_path: Path) -> None:
    net, back = convert_both_ways(tmp_path, """
input: "data" input_shape { dim: 2 dim: 3 }
input: "label" input_shape { dim: 2 }
layers { name: "o" type: HDF5_OUTPUT bottom: "data" bottom: "label"
         hdf5_output_param { file_name: "out.h5" } }
""")
    assert 'type: HDF5Output  bottom: ["data", "label"]  file_name: "out.h5"' in net
    assert 'hdf5_output_param { file_name: "out.h5" }' in back
