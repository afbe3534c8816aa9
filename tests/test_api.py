"""netdsl.Net, pycaffe's caffe.Net: blob order and shapes as Caffe prints them, forward
and backward over ranges of layers against the compiled graph and autograd, and the
training API (netdsl.Trainer) used from Python as the README shows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import netdsl
from netdsl.diagnostics import DataError
from tests.runtime.helpers import write_spec
from tests.shared import DB_INPUTS, ROOT

#: Caffe's blob layouts (BVLC/caffe src/caffe/layers/base_conv_layer.cpp LayerSetUp:
#: weights (num_output, channels / group, kh, kw); inner_product_layer.cpp: (N, K)), as
#: pycaffe's ``[(k, [p.data.shape for p in v]) for k, v in net.params.items()]`` lists them.
LENET_PARAMS = {"conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
                "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}
ALEXNET_PARAMS = {"conv1": [(96, 3, 11, 11), (96,)], "conv2": [(256, 48, 5, 5), (256,)],
                  "conv3": [(384, 256, 3, 3), (384,)], "conv4": [(384, 192, 3, 3), (384,)],
                  "conv5": [(256, 192, 3, 3), (256,)], "fc6": [(4096, 9216), (4096,)],
                  "fc7": [(4096, 4096), (4096,)], "fc8": [(1000, 4096), (1000,)]}


def caffe_blobs(shapes_file: Path) -> dict[str, tuple[int, ...]]:
    """The blobs of a Caffe log in the order Caffe made them (an in-place top is the blob
    it overwrites, so it appears once), with their printed shapes."""
    log = yaml.safe_load(shapes_file.read_text())
    out: dict[str, tuple[int, ...]] = {}
    for row in log["layers"]:
        out.setdefault(row["top"], tuple(row["shape"]))
    return out


def test_lenet_blobs_and_params_are_pycaffes(shared_caffe: Path) -> None:
    name = "mnist__lenet_train_test.prototxt"
    net = netdsl.Net(shared_caffe / "prototxt" / name, "train", batch=64,
                     inputs=DB_INPUTS[name], device="cpu")
    expected = caffe_blobs(shared_caffe / "shapes" / "lenet_train.yaml")
    assert list(net.blobs) == list(expected)  # data and label first, in Caffe's order
    assert {k: b.shape for k, b in net.blobs.items()} == expected
    assert {k: [p.shape for p in v] for k, v in net.params.items()} == LENET_PARAMS
    assert net.inputs == ["data", "label"] and net.outputs == ["loss"]
    assert list(net.layer_dict) == ["mnist", "conv1", "pool1", "conv2", "pool2", "ip1",
                                    "relu1", "ip2", "loss"]
    assert net.layer_dict["conv1"].type == "Convolution"
    assert net.layer_dict["conv1"].blobs[0] is net.params["conv1"][0]
    assert net.blobs["conv1"].num == 64 and net.blobs["conv1"].channels == 20
    assert net.blobs["loss"].diff.item() == 1.0  # Caffe's loss_weight, set up front


def test_alexnet_blobs_and_params_are_pycaffes(shared_caffe: Path) -> None:
    net = netdsl.Net(shared_caffe / "prototxt" / "bvlc_alexnet__deploy.prototxt",
                     device="cpu")
    expected = caffe_blobs(shared_caffe / "shapes" / "bvlc_alexnet.yaml")
    assert list(net.blobs) == list(expected)
    assert {k: b.shape for k, b in net.blobs.items()} == expected
    assert {k: [p.shape for p in v] for k, v in net.params.items()} == ALEXNET_PARAMS
    assert net.inputs == ["data"] and net.outputs == ["prob"]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "tiny.net", dropout=False)


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_forward_is_the_compiled_nets(tiny: Path) -> None:
    net = netdsl.Net(tiny, phase="train", device="cpu")
    x, y = batch()
    out = net.forward(data=x, label=y)
    ref = net.compiled(data=x, label=y)
    assert set(out) == {"loss"}
    torch.testing.assert_close(out["loss"], ref["loss"].detach())
    assert isinstance(out["loss"], torch.Tensor) and not out["loss"].requires_grad
    # the in-place relu1 overwrote fc1, as in Caffe; end= stops before it
    assert (net.blobs["fc1"].data >= 0).all()
    fc1 = net.forward(end="fc1")["fc1"]
    assert (fc1 < 0).any() and set(net.forward(end="fc1", blobs=["fc2"])) == {"fc1", "fc2"}


def test_forward_from_an_intermediate_blob(tiny: Path) -> None:
    net = netdsl.Net(tiny, phase="test", device="cpu")
    x, y = batch()
    full = net.forward(data=x, label=y)
    hidden = net.blobs["fc1"].data.clone()
    net.blobs["fc1"].data[...] = 0  # pycaffe: write the blob, then run from a layer on
    net.forward(start="fc2")
    bias = net.params["fc2"][1].data
    torch.testing.assert_close(net.blobs["fc2"].data, bias.expand(8, 10))
    net.blobs["fc1"].data = hidden  # assignment replaces the blob
    again = net.forward(start="fc2")
    torch.testing.assert_close(again["accuracy"], full["accuracy"])
    # a bigger batch is just another batch
    x2, y2 = batch(20)
    assert net.forward(data=x2, label=y2)["accuracy"].shape == ()
    assert net.blobs["data"].shape == (20, 1, 8, 8)


def test_backward_gives_autograds_gradients(tiny: Path) -> None:
    net = netdsl.Net(tiny, phase="train", device="cpu")
    x, y = batch()
    net.forward(data=x, label=y)
    diffs = net.backward()
    assert set(diffs) == {"data", "label"}
    mine = [p.diff.clone() for v in net.params.values() for p in v]
    xr = x.clone().requires_grad_()
    loss = net.compiled.loss(net.compiled(data=xr, label=y))
    grads = torch.autograd.grad(loss, [xr, *(p.tensor for v in net.params.values()
                                            for p in v)])
    torch.testing.assert_close(diffs["data"], grads[0])
    for a, b in zip(mine, grads[1:], strict=True):
        torch.testing.assert_close(a, b)
    # parameter diffs accumulate over backward passes, as Caffe's (the solver clears)
    net.backward()
    torch.testing.assert_close(net.params["fc1"][0].diff, 2 * grads[1])


def test_backward_over_a_range_from_set_diffs(tiny: Path) -> None:
    net = netdsl.Net(tiny, phase="test", device="cpu")
    x, y = batch()
    net.forward(data=x, label=y)
    g = torch.randn(8, 10, generator=torch.Generator().manual_seed(1))
    diffs = net.backward(start="fc2", fc2=g)
    xr = x.clone().requires_grad_()
    fc2 = net.compiled(data=xr, outputs=["fc2"])["fc2"]
    (expected,) = torch.autograd.grad(fc2, xr, g)
    torch.testing.assert_close(diffs["data"], expected)
    # stop at fc1: the diff reaching fc1's bottom; relu1 replaced fc1's diff in place
    net.backward(start="fc2", end="relu1", fc2=g)
    h = net.blobs["fc1"].data
    w2 = net.params["fc2"][0].data
    torch.testing.assert_close(net.blobs["fc1"].diff, (g @ w2) * (h > 0))


def test_parameter_blobs_are_the_nets(tiny: Path) -> None:
    net = netdsl.Net(tiny, device="cpu")
    x, y = batch()
    net.params["fc2"][1].data[...] = 5.0  # net surgery, as in pycaffe
    assert torch.equal(net.compiled.state_dict()["fc2.bias"], torch.full((10,), 5.0))
    net.params["fc2"][0].data = torch.zeros(10, 16)
    out = net.forward(data=x, label=y, blobs=["fc2"])
    assert torch.equal(out["fc2"], torch.full((8, 10), 5.0))


def test_weights_load_in_one_call(tiny: Path, tmp_path: Path) -> None:
    a = netdsl.Net(tiny, device="cpu", seed=1)
    a.save(tmp_path / "w.safetensors")
    b = netdsl.Net(tiny, tmp_path / "w.safetensors", "test", device="cpu", seed=2)
    x, y = batch()
    assert torch.equal(a.forward(data=x, label=y)["accuracy"],
                       b.forward(data=x, label=y)["accuracy"])
    assert torch.equal(a.params["fc1"][0].data, b.params["fc1"][0].data)
    assert netdsl.Net(tiny, "train", device="cpu").phase is netdsl.Phase.TRAIN


def test_mistakes_are_diagnostics(tiny: Path) -> None:
    net = netdsl.Net(tiny, device="cpu")
    with pytest.raises(DataError, match="no layer 'fc3'") as e:
        net.forward(start="fc3")
    assert "fc1" in (e.value.hint or "") or "fc2" in (e.value.hint or "")
    with pytest.raises(DataError, match="not an input"):
        net.forward(dta=torch.zeros(1, 1, 8, 8))
    with pytest.raises(DataError, match="no blob"):
        net.forward(blobs=["nope"])
    with torch.no_grad():
        net.forward(data=batch()[0], label=batch()[1])
    with pytest.raises(DataError, match="forward run with gradients"):
        net.backward()


def test_importing_netdsl_keeps_torch_out_and_the_ir_class_reachable() -> None:
    code = ("import sys, netdsl; assert 'torch' not in sys.modules; "
            "assert netdsl.ir.Net.__module__ == 'netdsl.ir'; "
            "assert netdsl.Net.__module__ == 'netdsl.api'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ the training API


def test_training_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example: the solver loop piece by piece."""
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.net")
    # --- README example starts
    trainer = netdsl.Trainer(spec, overrides={"solver.max_iter": "20"}, devices="cpu",
                             workers=0)
    for _ in range(10):
        lr, outputs = trainer.step()          # one solver iteration (iter_size passes)
    scores = trainer.test(batches=4)          # {"accuracy": ..., "loss": ...}
    path = trainer.snapshot()                 # snaps/tiny_iter_10.safetensors (+ state)
    net = netdsl.Net(spec, path)              # the weights, pycaffe-style
    # --- README example ends
    assert trainer.iteration == 10 and lr == pytest.approx(0.1 * 0.5)
    assert set(scores) >= {"accuracy", "loss"} and 0 <= scores["accuracy"] <= 1
    assert path.name == "tiny_iter_10.safetensors" and path.is_file()
    assert "loss" in outputs
    torch.testing.assert_close(net.params["fc1"][0].data,
                               trainer.net.state_dict()["fc1.weight"])
    again = netdsl.Trainer(spec, devices="cpu", workers=0)
    again.resume(path)
    assert again.iteration == 10
