"""Stage 10: the compiled net equals a hand-written PyTorch net with the same weights.

The reference is written here with plain torch modules (nn.Conv2d, nn.Linear,
nn.LocalResponseNorm, max_pool2d, dropout) from the paper's description, not with
netdsl code. It loads the compiled net's ``state_dict()``; forward outputs and every
parameter gradient must agree, for the two-device compile run through its real sharded
path (shards, halos, gathers) and for the one-device compile.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netdsl
from netdsl import syntax
from netdsl.build import build
from netdsl.caffe_compat import upgrade
from netdsl.compiled import CompiledNet
from netdsl.compiler import parse_device_map
from netdsl.diagnostics import DataError, PlacementError
from netdsl.ir import Net
from netdsl.kernels.lrn import lrn_shard
from netdsl.parse import parse_file
from netdsl.shapes import infer_shapes
from tests.shared import DB_INPUTS, caffe_params
from tests.test_placement import ALEXNET, build_text

TWO_CPUS = {"gpu:0": "cpu", "gpu:1": "cpu"}


class HandAlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever & Hinton 2012) in plain PyTorch."""

    def __init__(self, alpha: float = 5e-4, k: float = 2.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, 1000)
        # The paper's k = 2, n = 5, alpha = 1e-4, beta = 0.75 on the raw sum of squares;
        # torch divides alpha by n (see test_torch_lrn_is_caffes_formula): 5 * 1e-4.
        self.norm = nn.LocalResponseNorm(5, alpha=alpha, beta=0.75, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.norm(F.relu(self.conv1(x), inplace=True)), 3, 2)
        x = F.max_pool2d(self.norm(F.relu(self.conv2(x), inplace=True)), 3, 2)
        x = F.relu(self.conv3(x), inplace=True)
        x = F.relu(self.conv4(x), inplace=True)
        x = F.max_pool2d(F.relu(self.conv5(x), inplace=True), 3, 2)
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu(self.fc6(x), inplace=True), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x), inplace=True), 0.5, self.training)
        return self.fc8(x)


def test_torch_lrn_is_caffes_formula() -> None:
    """b_c = a_c / (k + alpha / n * sum_{c' in [c-2, c+2]} a_c'^2)^beta (lrn_layer.cpp)."""
    torch.manual_seed(0)
    a = torch.randn(2, 7, 3, 3, dtype=torch.float64)
    n, alpha, beta, k = 5, 5e-4 * 1000, 0.75, 2.0
    expected = torch.empty_like(a)
    for c in range(7):
        window = a[:, max(0, c - 2):c + 3]
        expected[:, c] = a[:, c] / (k + alpha / n * window.square().sum(1)) ** beta
    got = nn.LocalResponseNorm(n, alpha=alpha, beta=beta, k=k)(a)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def alexnet(tmp_path_factory: pytest.TempPathFactory) -> Net:
    return build_text(ALEXNET, tmp_path_factory.mktemp("alexnet"))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 227, 227, generator=g, dtype=torch.float64)
    return x, torch.tensor([3.0, 981.0])


def hand_alexnet(weights: dict[str, torch.Tensor], **kw: float) -> HandAlexNet:
    """The reference net holding ``weights`` (built on the meta device: no init cost)."""
    with torch.device("meta"):
        hand = HandAlexNet(**kw)
    hand.load_state_dict({k: v.detach().clone() for k, v in weights.items()}, assign=True)
    return hand


def assert_grad_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """``|got - ref| <= 1e-5 |ref| + 1e-9 max|ref|`` everywhere (torch.testing's rule
    with rtol 1e-5, in a few vectorised ops: its isclose costs seconds on AlexNet's
    float64 gradients). ``ref`` must not be all zeros: that would prove nothing."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, what
    ref_abs = ref.abs()
    scale = ref_abs.max().item()
    assert scale > 0, f"{what}: the reference gradient is all zeros"
    excess = (got - ref).abs_().sub_(ref_abs.mul_(1e-5)).max().item()
    assert excess <= 1e-9 * scale, f"{what}: off by {excess:.3g} beyond rtol 1e-5"


def _compare_with_hand(net: CompiledNet, x: torch.Tensor, label: torch.Tensor) -> None:
    hand = hand_alexnet(net.state_dict())
    net.eval()
    hand.eval()
    out = net(data=x, label=label)
    fc8 = net(data=x, outputs=["fc8"])["fc8"]
    ref = hand(x)
    torch.testing.assert_close(fc8, ref, rtol=1e-5, atol=1e-10)
    ref_loss = F.cross_entropy(ref, label.long())
    torch.testing.assert_close(out["loss"], ref_loss, rtol=1e-5, atol=0)
    net.loss(out).backward()
    ref_loss.backward()
    grads = net.grad_dict()
    hand_grads = {n: p.grad for n, p in hand.named_parameters()}
    assert set(grads) == set(hand_grads) == {
        f"{layer}.{blob}" for layer in ("conv1", "conv2", "conv3", "conv4", "conv5",
                                        "fc6", "fc7", "fc8") for blob in ("weight", "bias")}
    for key, g in grads.items():
        h = hand_grads[key]
        assert g is not None and h is not None, key
        assert_grad_close(g, h, key)


def test_two_device_sharded_path_equals_hand_written(alexnet: Net, batch: tuple) -> None:
    net = netdsl.compile(alexnet, devices=TWO_CPUS, seed=0, dtype=torch.float64, fuse=False)
    # really sharded: two modules per divided layer, LRN with halos, data moved
    assert isinstance(net.layers["conv2"], nn.ModuleList) and len(net.layers["conv2"]) == 2
    halos = [n for n in net.graph_module().graph.nodes
             if n.meta.get("layer") == "norm1" and n.target is lrn_shard]
    assert len(halos) == 2 and {n.kwargs["below"] + n.kwargs["above"] for n in halos} == {2}
    assert net.layers["conv2"][0].groups == 1
    assert tuple(net.layers["conv2"][1].weight.shape) == (128, 48, 5, 5)
    assert net.plan.layer("conv3").transfers and net.plan.bytes_per_image > 0
    _compare_with_hand(net, *batch)


ROOT = Path(__file__).resolve().parent.parent


def test_one_device_compile_equals_hand_written(batch: tuple) -> None:
    """The shipped specs/alexnet.net, both logical devices on the one CPU."""
    net = netdsl.compile(ROOT / "specs" / "alexnet.net", "train", devices="cpu", seed=0,
                         dtype=torch.float64)
    assert net.net.devices == ("gpu:0", "gpu:1")
    # fused: one grouped convolution and one full-size parameter per blob
    conv2 = net.layers["conv2"]
    assert not isinstance(conv2, nn.ModuleList) and conv2.groups == 2
    assert tuple(net.layers["fc6"].weight.shape) == (4096, 9216)
    assert net.plan.transfers == ()
    assert [n for n, _ in net.named_parameters()][:3] == ["conv1.weight", "conv1.bias",
                                                         "conv2.weight"]
    _compare_with_hand(net, *batch)


def test_caffe_alexnet_prototxt_equals_hand_written(shared_caffe: Path, batch: tuple) -> None:
    """BVLC's own bvlc_alexnet deploy prototxt (one device) against the same reference."""
    file = parse_file(shared_caffe / "prototxt" / "bvlc_alexnet__deploy.prototxt")
    net_ir = build(syntax.Spec(file.path, upgrade(file).items), "test")
    net = netdsl.compile(net_ir, devices="cpu", seed=0, dtype=torch.float64)
    assert not net.training  # a test-phase net comes back in eval mode
    x, _ = batch
    # bvlc_alexnet's weights use Caffe's names; its fillers are constant 0: load random ones
    g = torch.Generator().manual_seed(1)
    weights = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) * 0.01
               for k, v in net.state_dict().items()}
    net.load_state_dict(weights)
    hand = hand_alexnet(weights, alpha=1e-4, k=1.0).eval()  # BVLC's LRN: alpha 1e-4, k 1
    prob = net(data=x)["prob"]
    torch.testing.assert_close(prob, torch.softmax(hand(x), 1), rtol=1e-5, atol=1e-12)


@pytest.fixture(scope="module")
def alex32(alexnet: Net) -> tuple[CompiledNet, CompiledNet]:
    """The two-device AlexNet in float32: sharded (no fusion) and fused onto one CPU."""
    return (netdsl.compile(alexnet, devices=TWO_CPUS, seed=3, fuse=False),
            netdsl.compile(alexnet, devices=TWO_CPUS, seed=3))


def test_state_dict_is_caffes_whatever_the_placement(alex32: tuple) -> None:
    sharded, fused = alex32
    for net in (sharded, fused):
        sd = net.state_dict()
        assert tuple(sd["conv2.weight"].shape) == (256, 48, 5, 5)
        assert tuple(sd["conv2.bias"].shape) == (256,)
        assert tuple(sd["fc6.weight"].shape) == (4096, 9216)
        assert len(sd) == 16
    # weights written by one load into the other, shard by shard
    g = torch.Generator().manual_seed(2)
    new = {k: torch.randn(v.shape, generator=g) for k, v in fused.state_dict().items()}
    sharded.load_state_dict(new)
    assert all(torch.equal(sharded.state_dict()[k], v) for k, v in new.items())
    assert torch.equal(sharded.layers["fc6"][1].weight, new["fc6.weight"][2048:])
    # arrays (as read from a .caffemodel) load too
    sharded.load_state_dict({k: v.numpy() for k, v in new.items()})
    with pytest.raises(DataError, match="conv9"):
        sharded.load_state_dict({**new, "conv9.weight": new["conv1.weight"]})
    with pytest.raises(DataError, match="wrong shape"):
        sharded.load_state_dict({**new, "conv1.weight": torch.zeros(96, 3, 5, 5)})
    missing = sharded.load_state_dict({"fc8.bias": new["fc8.bias"]}, strict=False)
    assert "fc8.bias" not in missing.missing_keys and "fc8.weight" in missing.missing_keys
    names = [n for n, _ in sharded.named_parameters()]
    assert names[:2] == ["conv1.weight[0:48]", "conv1.weight[48:96]"]
    assert len(list(sharded.parameters())) == 32


def test_outputs_inputs_and_errors(alex32: tuple) -> None:
    net, fused = alex32
    net.eval()
    fused.eval()
    fused.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        out = net(data=x, label=torch.tensor([1.0]))
        assert set(out) == set(net.outputs) == {"loss"}
        blobs = net(data=x, outputs=["conv2", "pool5", "fc8"])  # no label needed for these
        assert blobs["conv2"].shape == (1, 256, 27, 27)
        assert blobs["fc8"].shape == (1, 1000)
        ref = fused(data=x, outputs=["conv2", "fc8"])
        # float32 through different kernels (two convolutions vs one grouped): equal up
        # to summation order, relative to the blob's scale
        for blob in ("conv2", "fc8"):
            scale = ref[blob].abs().max().item()
            torch.testing.assert_close(blobs[blob], ref[blob], rtol=1e-4, atol=1e-5 * scale)
    with pytest.raises(DataError, match="'date' is not an input") as e:
        net(date=x, label=torch.tensor([1.0]))
    assert e.value.hint is not None and "data" in e.value.hint
    with pytest.raises(DataError, match="missing input label"):
        net(data=x)
    with pytest.raises(DataError, match="no blob 'fc9'"):
        net(data=x, outputs=["fc9"])


SMALL = """
input { name: "data" shape: [2, 6, 6] }
input { name: "label" shape: [] }
layer { name: "conv" type: Convolution bottom: "data" num_output: 4 kernel_size: 3
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        weight_filler { type: "xavier" } }
layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
layer { name: "pool" type: Pooling bottom: "conv" pool: MAX kernel_size: 2 stride: 2 }
layer { name: "ip0" type: InnerProduct bottom: "pool" num_output: 4
        weight_filler { type: "gaussian" std: 0.5 } }
layer { name: "ip1" type: InnerProduct bottom: "ip0" num_output: 4 param { name: "shared" }
        bias_term: false weight_filler { type: "gaussian" std: 0.5 } }
layer { name: "ip2" type: InnerProduct bottom: "ip1" num_output: 4 param { name: "shared" }
        bias_term: false }
layer { name: "frozen" type: InnerProduct bottom: "ip2" num_output: 3 param { lr_mult: 0 }
        param { lr_mult: 0 } }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["frozen", "label"] loss_weight: 0.5 }
"""


@pytest.fixture
def small(tmp_path: Path) -> Net:
    return build_text(SMALL, tmp_path)


def test_phase(tmp_path: Path) -> None:
    text = SMALL + 'layer { name: "acc" type: Accuracy bottom: ["frozen", "label"] phase: TEST }'
    train = netdsl.compile(build_text(text, tmp_path), devices="cpu")
    assert train.training and set(train.outputs) == {"loss"}
    test = netdsl.compile(build_text(text, tmp_path, phase="test"), devices="cpu")
    assert not test.training and set(test.outputs) == {"loss", "acc"}
    out = test(data=torch.randn(4, 2, 6, 6), label=torch.tensor([0.0, 1.0, 2.0, 1.0]))
    assert 0 <= out["acc"].item() <= 1


def test_compile_a_path(shared_caffe: Path) -> None:
    pytest.importorskip("netdsl.resolve")
    net = netdsl.compile(shared_caffe / "prototxt" / "mnist__lenet.prototxt", "test",
                         devices="cpu", seed=0)
    assert not net.training
    assert net(data=torch.zeros(2, 1, 28, 28))["prob"].shape == (2, 10)


def test_param_groups_and_sharing(small: Net) -> None:
    net = netdsl.compile(small, devices="cpu", seed=0)
    groups = net.param_groups(base_lr=0.1, weight_decay=0.01)
    by_mult = {(g["lr_mult"], g["decay_mult"]): g for g in groups}
    assert set(by_mult) == {(1.0, 1.0), (2.0, 0.0), (0.0, 1.0)}
    assert by_mult[(2.0, 0.0)]["params"] == [net.layers["conv"].bias]
    assert by_mult[(2.0, 0.0)]["lr"] == pytest.approx(0.2)
    assert by_mult[(2.0, 0.0)]["weight_decay"] == 0
    assert by_mult[(1.0, 1.0)]["weight_decay"] == pytest.approx(0.01)
    # the shared blob is one tensor, listed once
    assert net.layers["ip1"].weight is net.layers["ip2"].weight
    assert sum(len(g["params"]) for g in groups) == 7
    sd = net.state_dict()
    assert torch.equal(sd["ip1.weight"], sd["ip2.weight"])
    # lr_mult 0: not learned (Caffe computes no gradient for it)
    assert not net.layers["frozen"].weight.requires_grad
    torch.optim.SGD(groups, lr=0.1).zero_grad()


def test_shared_gradient_and_loss_weight(small: Net) -> None:
    net = netdsl.compile(small, devices="cpu", seed=0, dtype=torch.float64)
    x, y = torch.randn(3, 2, 6, 6), torch.tensor([0.0, 2.0, 1.0])
    out = net(data=x, label=y)
    loss = net.loss(out)
    torch.testing.assert_close(loss, 0.5 * out["loss"])
    loss.backward()
    # reference: the same arithmetic by hand, with one shared weight
    sd = {k: v.clone().requires_grad_(True) for k, v in net.state_dict().items()}
    h = F.max_pool2d(F.relu(F.conv2d(x.double(), sd["conv.weight"], sd["conv.bias"])), 2, 2,
                     ceil_mode=True)
    w = sd["ip1.weight"]
    h = F.linear(h.flatten(1), sd["ip0.weight"], sd["ip0.bias"])
    h = F.linear(F.linear(h, w), w)
    logits = F.linear(h, sd["frozen.weight"], sd["frozen.bias"])
    ref = 0.5 * F.cross_entropy(logits, y.long())
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(net.layers["ip1"].weight.grad, w.grad)
    torch.testing.assert_close(net.layers["conv"].bias.grad, sd["conv.bias"].grad)


def test_sharing_needs_the_same_placement(tmp_path: Path) -> None:
    text = """
    devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [4] }
    layer { name: "a" type: InnerProduct bottom: "data" num_output: 4 param { name: "w" } }
    layer { name: "b" type: InnerProduct bottom: "a" num_output: 4 param { name: "w" }
            devices: ["gpu:1"] }
    """
    net = build_text(text, tmp_path)
    with pytest.raises(PlacementError, match="shares 'w'"):
        netdsl.compile(net, devices=TWO_CPUS, fuse=False)
    netdsl.compile(net, devices=TWO_CPUS)  # fused: both on the one CPU, fine


def test_outputs_divided_between_devices_are_gathered(tmp_path: Path) -> None:
    text = """
    devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [3, 8, 8] }
    layer { name: "conv" type: Convolution bottom: "data" num_output: 4 kernel_size: 3 pad: 1
            weight_filler { type: "gaussian" } }
    layer { name: "ip" type: InnerProduct bottom: "conv" num_output: 6
            weight_filler { type: "gaussian" } }
    """
    net = build_text(text, tmp_path)
    sharded = netdsl.compile(net, devices=TWO_CPUS, seed=1, fuse=False)
    one = netdsl.compile(net, devices="cpu", seed=1)
    x = torch.randn(2, 3, 8, 8)
    a, b = sharded(data=x), one(data=x)
    assert set(a) == {"ip"}
    torch.testing.assert_close(a["ip"], b["ip"])
    torch.testing.assert_close(sharded(data=x, outputs=["conv"])["conv"],
                               one(data=x, outputs=["conv"])["conv"])


def test_switches(small: Net) -> None:
    x, y = torch.randn(2, 2, 6, 6), torch.tensor([0.0, 1.0])
    ref = netdsl.compile(small, devices="cpu", seed=0)
    cl = netdsl.compile(small, devices="cpu", seed=0, channels_last=True)
    assert cl.layers["conv"].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(data=x, label=y)["loss"], ref(data=x, label=y)["loss"])
    bf = netdsl.compile(small, devices="cpu", seed=0, dtype=torch.bfloat16)
    assert bf.layers["conv"].weight.dtype == torch.float32  # autocast, not storage
    out = bf(data=x, outputs=["ip2", "loss"], label=y)
    assert out["ip2"].dtype == torch.bfloat16 and out["loss"].dtype == torch.float32
    torch.testing.assert_close(out["loss"], ref(data=x, label=y)["loss"], rtol=0.05, atol=0.05)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NETDSL_SLOW"), reason="about 25 s; set NETDSL_SLOW=1")
def test_torch_compile(small: Net) -> None:
    pytest.importorskip("torch._inductor")
    x, y = torch.randn(2, 2, 6, 6), torch.tensor([0.0, 1.0])
    ref = netdsl.compile(small, devices="cpu", seed=0)
    tc = netdsl.compile(small, devices="cpu", seed=0, torch_compile=True)
    try:
        got = tc(data=x, label=y)["loss"]
    except Exception as e:  # no C compiler for inductor on this machine
        pytest.skip(f"torch.compile unavailable: {type(e).__name__}")
    torch.testing.assert_close(got, ref(data=x, label=y)["loss"], rtol=1e-4, atol=1e-5)


def test_default_devices_and_device_maps(small: Net, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="netdsl"):
        net = netdsl.compile(small)
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert str(net.devices["gpu:0"]) == expected
    assert any("gpu:0 -> " + expected in r.getMessage() for r in caplog.records)
    assert parse_device_map("gpu:0=cuda:0, gpu:1=cpu") == {"gpu:0": "cuda:0", "gpu:1": "cpu"}
    assert parse_device_map("cpu") == {"*": "cpu"}
    with pytest.raises(PlacementError, match="gpu:7"):
        netdsl.compile(small, devices={"gpu:7": "cpu"})


# Every shared Caffe net: the lowered modules make exactly the shapes shape inference
# predicts (pooling's rounding above all), on a forward pass of zeros with batch 1.
BIG = {"vgg16__VGG_ILSVRC_16_layers_deploy.prototxt"}  # 138M parameters: too slow here


@pytest.mark.parametrize("path", caffe_params())
def test_lowered_shapes_match_shape_inference(path: Path) -> None:
    file = parse_file(path)
    spec = syntax.Spec(file.path, upgrade(file).items)
    phase = "test" if "deploy" in path.name or "lenet.prototxt" in path.name else "train"
    net_ir = build(spec, phase)
    shapes = infer_shapes(net_ir, 1, DB_INPUTS.get(path.name))
    if path.name in BIG:  # too big to compile whole here: each Pooling layer's module alone
        pools = [(lay, row) for lay, row in zip(net_ir.layers, shapes.layers, strict=True)
                 if lay.type == "Pooling"]
        assert pools
        for lay, row in pools:
            mod = lay.kind.lower(lay.params, row.bottoms, row.tops)
            with torch.no_grad():
                top = mod(torch.zeros(row.bottoms[0]))
            assert tuple(top.shape) == row.tops[0], lay.name
        return
    net = netdsl.compile(net_ir, devices="cpu", batch=1, inputs=DB_INPUTS.get(path.name), seed=0)
    feeds = {n: torch.zeros(shapes.blobs[n]) for n in net.inputs}
    with torch.no_grad():
        out = net(outputs=list(shapes.blobs), **feeds)
    for blob, shape in shapes.blobs.items():
        assert tuple(out[blob].shape) == tuple(shape), blob


def test_deep_copy_runs_its_own_modules(small: Net) -> None:
    import copy

    net = netdsl.compile(small, devices="cpu", seed=0)
    x = torch.randn(2, 2, 6, 6)
    before = net(data=x, outputs=["ip2"])["ip2"]
    twin = copy.deepcopy(net)
    assert twin.layers["ip1"].weight is twin.layers["ip2"].weight  # still shared
    with torch.no_grad():
        twin.layers["conv"].weight.mul_(2)
    assert torch.equal(net(data=x, outputs=["ip2"])["ip2"], before)
    assert not torch.equal(twin(data=x, outputs=["ip2"])["ip2"], before)


def test_nested_in_another_module(small: Net) -> None:
    class Wrapped(nn.Module):
        def __init__(self, seed: int) -> None:
            super().__init__()
            self.body = netdsl.compile(small, devices="cpu", seed=seed)
            self.head = nn.Linear(3, 2)

    a, b = Wrapped(0), Wrapped(1)
    sd = a.state_dict()
    assert "body.conv.weight" in sd and "head.bias" in sd and len(sd) == 10
    assert not b.load_state_dict(sd).missing_keys
    assert torch.equal(b.body.layers["conv"].weight, a.body.layers["conv"].weight)
    del sd["body.conv.bias"]
    with pytest.raises(RuntimeError, match="body.conv.bias"):
        b.load_state_dict(sd)


def test_lrn_whose_halo_is_already_local(tmp_path: Path) -> None:
    """The Concat gathers all of conv onto gpu:0 first, so the LRN shard there finds
    its halo channels locally (no transfer) but must still drop them from its result."""
    text = """
    devices: ["gpu:0", "gpu:1"]
    input { name: "data" shape: [3, 6, 6] }
    layer { name: "conv" type: Convolution bottom: "data" num_output: 8 kernel_size: 3 pad: 1
            weight_filler { type: "gaussian" } }
    layer { name: "cat" type: Concat bottom: ["conv", "conv"] }
    layer { name: "norm" type: LRN bottom: "conv" local_size: 3 alpha: 1 beta: 0.75 }
    """
    from netdsl.placement import Need

    net = build_text(text, tmp_path)
    sharded = netdsl.compile(net, devices=TWO_CPUS, seed=0, fuse=False)
    s0, s1 = sharded.plan.layer("norm").shards
    assert s0.inputs[0].kind is Need.NONE and s0.inputs[0].halo == (0, 1)
    assert s1.inputs[0].kind is Need.HALO
    one = netdsl.compile(net, devices="cpu", seed=0)
    x = torch.randn(2, 3, 6, 6)
    a, b = sharded(data=x), one(data=x)
    assert set(a) == {"cat", "norm"}
    for k in a:
        torch.testing.assert_close(a[k], b[k])
