"""On CUDA: the compiled AlexNet against the hand-written one, placed across cuda:0 and
the CPU, fused onto one GPU, under bf16 autocast, and under torch.compile.

Every test here is marked ``gpu`` and skips where there is no CUDA device (CI has none);
the same comparisons run on the CPU in tests/test_lower.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import netdsl
from netdsl.ir import Net
from tests.test_lower import assert_grad_close, hand_alexnet
from tests.test_placement import ALEXNET, build_text

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def alexnet(tmp_path_factory: pytest.TempPathFactory) -> Net:
    return build_text(ALEXNET, tmp_path_factory.mktemp("alexnet_gpu"))


def _batch(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 227, 227, generator=g, dtype=dtype)
    return x.to(device), torch.tensor([3.0, 981.0, 0.0, 500.0], device=device)


def _against_hand(net: netdsl.CompiledNet, device: str) -> None:
    """Forward and every gradient in float64 against the hand-written net on ``device``."""
    x, label = _batch(device, torch.float64)
    hand = hand_alexnet({k: v.to(device) for k, v in net.state_dict().items()}).eval()
    net.eval()
    out = net(data=x, label=label)
    ref = hand(x)
    torch.testing.assert_close(net(data=x, outputs=["fc8"])["fc8"].to(device), ref,
                               rtol=1e-5, atol=1e-10)
    ref_loss = F.cross_entropy(ref, label.long())
    torch.testing.assert_close(out["loss"].to(device), ref_loss, rtol=1e-5, atol=0)
    net.loss(out).backward()
    ref_loss.backward()
    hand_grads = {n: p.grad for n, p in hand.named_parameters()}
    for key, g in net.grad_dict().items():
        assert g is not None and hand_grads[key] is not None, key
        assert_grad_close(g.to(device), hand_grads[key], key)


def test_placed_across_cuda_and_cpu_equals_hand_written(alexnet: Net) -> None:
    """Each logical device a different real one: shards, halos and gathers cross the bus."""
    net = netdsl.compile(alexnet, devices={"gpu:0": "cuda:0", "gpu:1": "cpu"}, seed=0,
                         dtype=torch.float64, fuse=False)
    assert {str(p.device) for p in net.parameters()} == {"cuda:0", "cpu"}
    assert ".to('cpu'" in net.code and ".to('cuda:0'" in net.code
    _against_hand(net, "cuda:0")


def test_fused_on_one_gpu_equals_hand_written() -> None:
    net = netdsl.compile(ROOT / "specs" / "alexnet.net", "train", devices="cuda:0", seed=0,
                         dtype=torch.float64)
    assert net.plan.transfers == ()
    _against_hand(net, "cuda:0")


def test_bf16_autocast_is_close_to_fp32(alexnet: Net) -> None:
    x, label = _batch("cuda:0", torch.float32)
    fp32 = netdsl.compile(alexnet, devices="cuda:0", seed=0).eval()
    bf16 = netdsl.compile(alexnet, devices="cuda:0", seed=0, dtype=torch.bfloat16,
                          channels_last=True).eval()
    with torch.no_grad():
        ref = fp32(data=x, label=label)["loss"]
        out = bf16(data=x, label=label, outputs=["fc8", "loss"])
    assert out["fc8"].dtype == torch.bfloat16 and out["loss"].dtype == torch.float32
    torch.testing.assert_close(out["loss"], ref, rtol=0.05, atol=0.05)


def test_torch_compile_whole_graph_on_cuda(alexnet: Net) -> None:
    """Inductor on the GPU: one graph, and the same loss as eager up to float32 kernels."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    x, label = _batch("cuda:0", torch.float32)
    eager = netdsl.compile(alexnet, devices="cuda:0", seed=0).eval()
    compiled = netdsl.compile(alexnet, devices="cuda:0", seed=0, torch_compile=True).eval()
    with torch.no_grad():
        ref = eager(data=x, label=label)["loss"]
        got = compiled(data=x, label=label)["loss"]
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-4)
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 1


def test_cuda_graphs_train_step(alexnet: Net) -> None:
    """reduce-overhead mode: repeated train steps give finite, changing losses."""
    x, label = _batch("cuda:0", torch.float32)
    net = netdsl.compile(alexnet, devices="cuda:0", seed=0, cuda_graphs=True)
    net.train()
    opt = torch.optim.SGD(net.param_groups(0.01), lr=0.01)
    losses = []
    for _ in range(4):
        opt.zero_grad(set_to_none=True)
        loss = net.loss(net(data=x, label=label))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[0] != losses[-1]
