"""Whole-graph ``torch.compile``: the compiled net is one fx graph, so dynamo captures it
in one frame, without graph breaks, once for training and once for inference.

The graphs are counted with a backend that records what dynamo hands it and runs it
eagerly (inductor's code generation is not what is tested here, and takes minutes on a
small CPU); ``aot_eager`` also traces the backward pass, custom LRN gradient included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import netdsl

ROOT = Path(__file__).resolve().parent.parent

CASES = [("alexnet.net", (2, 3, 227, 227)), ("googlenet.net", (2, 3, 224, 224))]



def _feed(net: netdsl.CompiledNet, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    feed = {"data": torch.randn(*shape)}
    if "label" in net.inputs:
        feed["label"] = torch.randint(0, 1000, (shape[0],)).float()
    return feed


@pytest.mark.parametrize("spec, shape", CASES, ids=[c[0] for c in CASES])
def test_one_graph_for_training_and_one_for_inference(dynamo: dict, spec: str,
                                                      shape: tuple[int, ...]) -> None:
    net = netdsl.compile(ROOT / "specs" / spec, "train", devices="cpu", seed=0,
                         torch_compile={"backend": dynamo["backend"]})
    feed = _feed(net, shape)
    for _ in range(3):  # the same shapes again: no recompile
        out = net(**feed)
        sum(v.float().sum() for v in out.values()).backward()
    assert len(dynamo["graphs"]) == 1
    net.eval()
    with torch.no_grad():
        for _ in range(3):
            net(**feed)
    assert len(dynamo["graphs"]) == 2
    counters = dynamo["counters"]
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 2
    # every layer that computes something is in the captured training graph
    captured = sum(1 for n in dynamo["graphs"][0].graph.nodes if n.op != "placeholder")
    assert captured >= len([lay for lay in net.net.layers if not lay.kind.is_input])


def test_compiled_equals_eager_with_aot_autograd(dynamo: dict) -> None:
    """aot_eager traces forward and backward (the LRN's own gradient too): same loss,
    same gradients as the eager net."""
    spec = ROOT / "specs" / "alexnet_small.net"
    eager = netdsl.compile(spec, "train", devices="cpu", seed=0, dtype=torch.float64)
    comp = netdsl.compile(spec, "train", devices="cpu", seed=0, dtype=torch.float64,
                          torch_compile={"backend": "aot_eager"})
    eager.eval()
    comp.eval()  # no dropout: the two draw different masks
    x = torch.randn(4, *eager.shapes.blobs["data"][1:], dtype=torch.float64)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    a, b = eager.loss(eager(data=x, label=y)), comp.loss(comp(data=x, label=y))
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a, rtol=1e-10, atol=0)
    ga, gb = eager.grad_dict(), comp.grad_dict()
    for k in ga:
        torch.testing.assert_close(gb[k], ga[k], rtol=1e-9, atol=1e-12)


def test_code_is_the_program() -> None:
    """``net.code`` is the graph printed as Python: one call per layer, fed by blob name."""
    net = netdsl.compile(ROOT / "specs" / "alexnet.net", "train", devices="cpu", seed=0)
    code = net.code
    assert code.startswith("def forward(self, data, label):")
    assert "self.layers.conv1(data)" in code and "torch.relu_(conv1)" in code
    assert "lrn(relu1, local_size = 5, alpha = 0.0005, beta = 0.75, k = 2.0" in code
    assert code.rstrip().endswith("return (loss,)")
    fc8 = net.graph_module(["fc8"])
    assert "label" not in fc8.code and "loss" not in fc8.code
