"""Caffe Python layers (``type: "Python"``), run unmodified with netdsl's ``caffe`` stand-in.

The layers here are written as Caffe users write them: ``pyloss.py`` is shaped as Caffe's
examples/pycaffe/layers/pyloss.py (BVLC/caffe), and ``rpn/proposal_layer.py`` mimics the
interface of rbgirshick/py-faster-rcnn lib/rpn/proposal_layer.py (``param_str_`` parsed
as YAML, ``str(self.phase)`` as a config key, ``top[0].reshape(1, 5)`` in ``setup``, the
number of ROIs set in ``forward``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import NetdslError, ShapeError, Span
from netdsl.layers import REGISTRY
from netdsl.layers.base import ShapeContext
from netdsl.pycaffe import provided, real_caffe_installed, shim
from netdsl.shapes import infer_shapes
from tests.shared import ROOT

if importlib.util.find_spec("caffe") is not None:  # pragma: no cover - a real Caffe here
    pytest.skip("a real pycaffe is installed: the shim tests assume none", allow_module_level=True)

# A Euclidean loss as Caffe users write Python layers (the shape of Caffe's own
# examples/pycaffe/layers/pyloss.py: float32 numpy state, loss / N / 2, a backward that
# ignores the top's diff), written here for the tests.
PYLOSS = '''\
import caffe
import numpy as np


class EuclideanLossLayer(caffe.Layer):
    """Half the mean over the batch of the squared distance of two bottoms."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise Exception("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise Exception("Inputs must have the same dimension.")
        self.delta = np.zeros(bottom[0].data.shape, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        np.subtract(bottom[0].data, bottom[1].data, out=self.delta)
        top[0].data[...] = (self.delta ** 2).sum() / (2.0 * bottom[0].num)

    def backward(self, top, propagate_down, bottom):
        for i, sign in enumerate((1.0, -1.0)):
            if propagate_down[i]:
                bottom[i].diff[...] = sign * self.delta / bottom[i].num
'''

# A layer with a param_str (a Python dict literal, as many Caffe layers take it).
SQUARE = '''\
import caffe
import numpy as np


class ScaledSquare(caffe.Layer):
    """top = scale * bottom**2 + shift; param_str: "{'scale': s, 'shift': t}"."""

    log = []

    def setup(self, bottom, top):
        params = eval(self.param_str)
        self.scale, self.shift = float(params["scale"]), float(params.get("shift", 0))
        ScaledSquare.log.append(("setup", str(self.phase), self.phase == caffe.TRAIN))

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        ScaledSquare.log.append(("forward", str(self.phase)))
        top[0].data[...] = self.scale * bottom[0].data ** 2 + self.shift

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 2 * self.scale * bottom[0].data * top[0].diff


class Product(caffe.Layer):
    """top = a * b; records the propagate_down it was given."""

    seen = []

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * bottom[1].data

    def backward(self, top, propagate_down, bottom):
        Product.seen.append(list(propagate_down))
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * bottom[1].data
        if propagate_down[1]:
            bottom[1].diff[...] = top[0].diff * bottom[0].data


class RampData(caffe.Layer):
    """A data layer: no bottoms, no backward; param_str: "N,C"."""

    def setup(self, bottom, top):
        n, c = (int(v) for v in self.param_str.split(","))
        top[0].reshape(n, c)
        top[1].reshape(n)
        self.calls = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        self.calls += 1
        top[0].data[...] = np.arange(top[0].count).reshape(top[0].shape) / 10.0
        top[1].data[...] = self.calls


class Broken(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].shape)

    def forward(self, bottom, top):
        raise ValueError("forward went wrong")


class PhaseWidth(caffe.Layer):
    """Keeps the first 3 columns in TEST and all of them in TRAIN, decided in reshape."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        keep = 3 if self.phase == caffe.TEST else bottom[0].data.shape[1]
        top[0].reshape(bottom[0].data.shape[0], keep)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data[:, :top[0].shape[1]]
'''

PROPOSAL = '''\
import caffe
import numpy as np
import yaml

# Stand-ins for fast_rcnn.config's cfg.TRAIN / cfg.TEST.
CFG = {"TRAIN": {"PRE_NMS_TOP_N": 120, "POST_NMS_TOP_N": 100},
       "TEST": {"PRE_NMS_TOP_N": 60, "POST_NMS_TOP_N": 50}}


def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    ctr = (base_size - 1) / 2.0
    out = []
    for r in ratios:
        w = np.round(np.sqrt(base_size * base_size / r))
        h = np.round(w * r)
        for s in scales:
            ws, hs = w * s, h * s
            out.append([ctr - (ws - 1) / 2, ctr - (hs - 1) / 2,
                        ctr + (ws - 1) / 2, ctr + (hs - 1) / 2])
    return np.array(out)


def bbox_transform_inv(boxes, deltas):
    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    cx = boxes[:, 0] + 0.5 * widths + deltas[:, 0] * widths
    cy = boxes[:, 1] + 0.5 * heights + deltas[:, 1] * heights
    w = np.exp(deltas[:, 2]) * widths
    h = np.exp(deltas[:, 3]) * heights
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1)


class ProposalLayer(caffe.Layer):
    def setup(self, bottom, top):
        layer_params = yaml.safe_load(self.param_str_)
        self._feat_stride = layer_params['feat_stride']
        self._anchors = generate_anchors()
        self._num_anchors = self._anchors.shape[0]
        top[0].reshape(1, 5)
        if len(top) > 1:
            top[1].reshape(1, 1, 1, 1)

    def forward(self, bottom, top):
        assert bottom[0].data.shape[0] == 1, 'Only single item batches are supported'
        cfg_key = str(self.phase)
        pre_nms_topN = CFG[cfg_key]["PRE_NMS_TOP_N"]
        post_nms_topN = CFG[cfg_key]["POST_NMS_TOP_N"]
        scores = bottom[0].data[:, self._num_anchors:, :, :]
        bbox_deltas = bottom[1].data
        im_info = bottom[2].data[0, :]
        height, width = scores.shape[-2:]
        shift_x = np.arange(0, width) * self._feat_stride
        shift_y = np.arange(0, height) * self._feat_stride
        shift_x, shift_y = np.meshgrid(shift_x, shift_y)
        shifts = np.vstack((shift_x.ravel(), shift_y.ravel(),
                            shift_x.ravel(), shift_y.ravel())).transpose()
        A, K = self._num_anchors, shifts.shape[0]
        anchors = self._anchors.reshape((1, A, 4)) + shifts.reshape((1, K, 4)).transpose((1, 0, 2))
        anchors = anchors.reshape((K * A, 4))
        bbox_deltas = bbox_deltas.transpose((0, 2, 3, 1)).reshape((-1, 4))
        scores = scores.transpose((0, 2, 3, 1)).reshape((-1, 1))
        proposals = bbox_transform_inv(anchors, bbox_deltas)
        proposals[:, 0::2] = np.clip(proposals[:, 0::2], 0, im_info[1] - 1)
        proposals[:, 1::2] = np.clip(proposals[:, 1::2], 0, im_info[0] - 1)
        order = scores.ravel().argsort()[::-1][:pre_nms_topN][:post_nms_topN]
        proposals, scores = proposals[order, :], scores[order]
        batch_inds = np.zeros((proposals.shape[0], 1), dtype=np.float32)
        blob = np.hstack((batch_inds, proposals.astype(np.float32, copy=False)))
        top[0].reshape(*(blob.shape))
        top[0].data[...] = blob
        if len(top) > 1:
            top[1].reshape(*(scores.shape))
            top[1].data[...] = scores

    def backward(self, top, propagate_down, bottom):
        """This layer does not propagate gradients."""
        pass

    def reshape(self, bottom, top):
        """Reshaping happens during the call to forward."""
        pass
'''

RPN_NET = """\
name: "rpn"
input: "data"
input_shape { dim: 1 dim: 3 dim: 64 dim: 80 }
input: "im_info"
input_shape { dim: 1 dim: 3 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 16 } }
layer { name: "rpn_cls_score" type: "Convolution" bottom: "conv1" top: "rpn_cls_score"
  convolution_param { num_output: 18 kernel_size: 1 } }
layer { name: "rpn_bbox_pred" type: "Convolution" bottom: "conv1" top: "rpn_bbox_pred"
  convolution_param { num_output: 36 kernel_size: 1 } }
layer { name: "rpn_cls_score_reshape" type: "Reshape" bottom: "rpn_cls_score"
  top: "rpn_cls_score_reshape" reshape_param { shape { dim: 0 dim: 2 dim: -1 dim: 0 } } }
layer { name: "rpn_cls_prob" type: "Softmax" bottom: "rpn_cls_score_reshape"
  top: "rpn_cls_prob" }
layer { name: 'rpn_cls_prob_reshape' type: 'Reshape' bottom: 'rpn_cls_prob'
  top: 'rpn_cls_prob_reshape' reshape_param { shape { dim: 0 dim: 18 dim: -1 dim: 0 } } }
layer {
  name: 'proposal'
  type: 'Python'
  bottom: 'rpn_cls_prob_reshape'
  bottom: 'rpn_bbox_pred'
  bottom: 'im_info'
  top: 'rois'
  top: 'scores'
  python_param {
    module: 'rpn.proposal_layer'
    layer: 'ProposalLayer'
    param_str: "'feat_stride': 16"
  }
}
"""


def loss_net(module: str = "pyloss", layer: str = "EuclideanLossLayer", b: int = 12) -> str:
    return f"""\
name: "pyloss"
input: "a"
input_shape {{ dim: 10 dim: 12 }}
input: "b"
input_shape {{ dim: 10 dim: {b} }}
layer {{
  type: 'Python'
  name: 'loss'
  top: 'loss'
  bottom: 'a'
  bottom: 'b'
  python_param {{
    module: '{module}'
    layer: '{layer}'
  }}
  loss_weight: 1
}}
"""


@pytest.fixture
def layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path with the test's layer modules; the modules are forgotten
    afterwards (so each test imports its own)."""
    folder = tmp_path / "pylayers"
    (folder / "rpn").mkdir(parents=True)
    (folder / "pyloss.py").write_text(PYLOSS)
    (folder / "square_layers.py").write_text(SQUARE)
    (folder / "rpn" / "__init__.py").write_text("")
    (folder / "rpn" / "proposal_layer.py").write_text(PROPOSAL)
    (folder / "needs_dep.py").write_text("import caffe\nimport fast_rcnn_not_here\n")
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("pyloss", "square_layers", "rpn", "needs_dep", "caffe"):
            del sys.modules[name]
    assert sys.modules.get("caffe") is not shim, "the caffe shim was left installed"


def spec(tmp_path: Path, text: str, name: str = "net.prototxt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def square_net(param_str: str = "{'scale': 2.5, 'shift': -1}") -> str:
    return f"""\
name: "square"
input: "x"
input_shape {{ dim: 4 dim: 3 }}
layer {{ name: "sq" type: "Python" bottom: "x" top: "y"
  python_param {{ module: "square_layers" layer: "ScaledSquare" param_str: "{param_str}" }} }}
"""


# --- the caffe stand-in ------------------------------------------------------------------


def test_blob_follows_caffe() -> None:
    b = shim.Blob()
    assert (b.shape, b.count) == ((), 0)  # Caffe's Blob(): no shape, nothing held
    b.reshape(2, 3, 4, 5)
    assert (b.num, b.channels, b.height, b.width, b.count) == (2, 3, 4, 5, 120)
    b.data[...] = np.arange(120).reshape(2, 3, 4, 5)
    assert b.data.dtype == np.float32 and b.diff.shape == (2, 3, 4, 5)
    b.reshape(2, 30)  # fits: the values are kept, viewed in the new shape
    assert b.data[1, 0] == 30
    b.reshape(7)  # LegacyShape: missing axes read as 1
    assert (b.num, b.channels, b.height, b.width) == (7, 1, 1, 1)
    b.reshape([3, 3])
    assert b.shape == (3, 3)
    b.reshape()
    assert (b.shape, b.count) == ((), 1)
    with pytest.raises(ValueError):
        b.reshape(2, -1)
    with pytest.raises(ValueError):
        shim.Blob((1, 2, 3, 4, 5)).num  # noqa: B018  # LegacyShape is for 4 axes at most


def test_phase_is_an_int_named_as_caffe_prints_it() -> None:
    assert shim.TRAIN == 0 and shim.TEST == 1
    assert str(shim.TRAIN) == "TRAIN" and str(shim.TEST) == "TEST"


def test_shim_is_provided_only_while_asked_and_never_over_a_real_caffe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "caffe" not in sys.modules and not real_caffe_installed()
    with provided():
        import caffe

        assert caffe is shim and sys.modules["caffe"] is shim
        with provided():  # nested: still there after the inner one
            pass
        assert sys.modules["caffe"] is shim
    assert "caffe" not in sys.modules
    # A folder called caffe without __init__.py (a source tree) is not pycaffe.
    (tmp_path / "caffe").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not real_caffe_installed()
    # A real (here: fake) pycaffe is never shadowed.
    real = tmp_path / "site"
    (real / "caffe").mkdir(parents=True)
    (real / "caffe" / "__init__.py").write_text("class Layer:\n    REAL = True\n")
    monkeypatch.syspath_prepend(str(real))
    try:
        assert real_caffe_installed()
        with provided():
            import caffe

            assert caffe is not shim and caffe.Layer.REAL
    finally:
        sys.modules.pop("caffe", None)


def test_a_layer_of_a_real_caffe_runs_on_netdsl_blobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layers: Path) -> None:
    real = tmp_path / "site"
    (real / "caffe").mkdir(parents=True)
    (real / "caffe" / "__init__.py").write_text("class Layer:\n    REAL = True\n")
    (real / "real_layers.py").write_text(
        "import caffe\n\nclass Twice(caffe.Layer):\n"
        "    def setup(self, bottom, top):\n        self.k = int(self.param_str)\n"
        "    def reshape(self, bottom, top):\n        top[0].reshape(*bottom[0].shape)\n"
        "    def forward(self, bottom, top):\n        top[0].data[...] = self.k * bottom[0].data\n")
    monkeypatch.syspath_prepend(str(real))
    text = square_net().replace("square_layers", "real_layers").replace(
        "ScaledSquare", "Twice").replace("{'scale': 2.5, 'shift': -1}", "3")
    try:
        net = netdsl.compile(spec(tmp_path, text), "test", "cpu")
        x = torch.randn(4, 3)
        torch.testing.assert_close(net(x=x)["y"], 3 * x)
        assert sys.modules["real_layers"].caffe is sys.modules["caffe"] is not shim
    finally:
        for name in ("caffe", "real_layers"):
            sys.modules.pop(name, None)


# --- shapes --------------------------------------------------------------------------------


def test_shapes_come_from_the_layers_own_setup_and_reshape(tmp_path: Path, layers: Path) -> None:
    table = infer_shapes(netdsl.load(spec(tmp_path, loss_net())))
    assert table.blobs["loss"] == (1,)  # pyloss: top[0].reshape(1)
    table = infer_shapes(netdsl.load(spec(tmp_path, square_net())))
    assert table.blobs["y"] == (4, 3)
    assert "caffe" not in sys.modules  # the shim is gone once shapes are done


def test_shapes_run_without_torch(tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, RPN_NET)
    code = ("import sys, netdsl; from netdsl.shapes import infer_shapes; "
            f"t = infer_shapes(netdsl.load({str(path)!r}, 'test')); "
            "print(t.blobs['rois'], t.blobs['scores']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(layers), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "(1, 5) (1, 1, 1, 1)"


def test_reshape_raising_is_a_diagnostic_with_the_users_line(
        tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, loss_net(b=11))
    with pytest.raises(ShapeError) as info:
        infer_shapes(netdsl.load(path))
    e = info.value
    assert e.message == ("Python 'loss': pyloss.EuclideanLossLayer.reshape raised Exception: "
                         "Inputs must have the same dimension.")
    assert (e.span.path, e.span.line) == (str(path), 13)  # module: 'pyloss'
    line = PYLOSS.splitlines().index(
        '            raise Exception("Inputs must have the same dimension.")') + 1
    assert e.notes == (("raised here", Span(str(layers / "pyloss.py"), line, 1)),)


def test_an_error_deep_in_a_library_points_at_the_users_call(
        tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, RPN_NET.replace("\"'feat_stride': 16\"", '"feat_stride: [16"'))
    with pytest.raises(ShapeError) as info:
        infer_shapes(netdsl.load(path, "test"))
    e = info.value
    assert e.message.startswith("Python 'proposal': rpn.proposal_layer.ProposalLayer.setup "
                                "raised ParserError: ")
    line = PROPOSAL.splitlines().index(
        "        layer_params = yaml.safe_load(self.param_str_)") + 1
    where = Span(str(layers / "rpn" / "proposal_layer.py"), line, 1)
    assert e.notes == (("raised here", where),)


def test_missing_module_says_which_where_and_how(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec(tmp_path, loss_net(module="no_such_layer_module"))
    assert main(["shapes", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:13:5: error: Python 'loss': cannot import Python layer "
                          "module 'no_such_layer_module': no module named 'no_such_layer_module'")
    assert "module: 'no_such_layer_module'" in err  # the python_param line is quoted
    looked = next(line for line in err.splitlines() if "note: Python looked in" in line)
    assert all(p in looked for p in sys.path if p)
    assert "hint: add the folder holding no_such_layer_module.py to PYTHONPATH" in err
    assert "Traceback" not in err


def test_a_module_next_to_the_spec_gets_a_pythonpath_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "beside_layers.py").write_text(SQUARE)
    path = spec(tmp_path, square_net().replace("square_layers", "beside_layers"))
    assert main(["shapes", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"hint: beside_layers.py is next to the spec: run with PYTHONPATH={tmp_path}" in err


def test_a_missing_dependency_of_the_module_is_named(tmp_path: Path, layers: Path) -> None:
    with pytest.raises(ShapeError) as info:
        infer_shapes(netdsl.load(spec(tmp_path, loss_net(module="needs_dep"))))
    e = info.value
    assert e.message == ("Python 'loss': importing Python layer module 'needs_dep' failed: "
                         "no module named 'fast_rcnn_not_here'")
    assert e.notes[0] == ("raised here", Span(str(layers / "needs_dep.py"), 2, 1))
    assert "'needs_dep' imports 'fast_rcnn_not_here'" in (e.hint or "")


def test_a_misspelt_class_is_found(tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, loss_net(layer="EuclideanLosLayer"))
    with pytest.raises(ShapeError) as info:
        infer_shapes(netdsl.load(path))
    e = info.value
    assert "module 'pyloss'" in e.message and "has no class 'EuclideanLosLayer'" in e.message
    assert e.hint == "did you mean 'EuclideanLossLayer'?"
    assert e.span.line == 14  # layer: '...'


def test_a_data_layer_may_take_its_shapes_from_input() -> None:
    """Without its module, a Python layer with no bottoms takes --input shapes (the rule
    itself; ``infer_shapes`` accepts --input names only for input layers' tops)."""
    kind = REGISTRY["Python"]
    p = kind.Params(module="not_importable_anywhere", layer="Data")
    ctx = ShapeContext("data", "Python", Span("n.prototxt", 3, 1), {}, ("data", "label"), 8,
                       {"data": (3, 32, 32), "label": (1,)})
    assert kind.shape(p, (), ctx) == ((8, 3, 32, 32), (8, 1))
    ctx = ShapeContext("data", "Python", Span("n.prototxt", 3, 1), {}, ("data",), 8, {})
    with pytest.raises(ShapeError) as info:
        kind.shape(p, (), ctx)
    assert "--input data=C,H,W" in (info.value.hint or "")


# --- forward and backward ------------------------------------------------------------------


def test_pyloss_is_caffes_euclidean_loss(tmp_path: Path, layers: Path) -> None:
    net = netdsl.compile(spec(tmp_path, loss_net()), "train", "cpu")
    a = torch.randn(10, 12, dtype=torch.float64, requires_grad=True)
    b = torch.randn(10, 12, dtype=torch.float64, requires_grad=True)
    out = net(a=a, b=b)
    expected = ((a - b) ** 2).sum() / 10 / 2  # EuclideanLossLayer: sum / N / 2
    torch.testing.assert_close(out["loss"], expected.reshape(1), rtol=1e-6, atol=1e-6)
    net.loss(out).backward()
    d = (a - b).detach() / 10
    torch.testing.assert_close(a.grad, d, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.grad, -d, rtol=1e-6, atol=1e-6)


def _kernel(path: Path, layer: str, phase: str = "train") -> torch.nn.Module:
    net = netdsl.compile(path, phase, "cpu")
    module: torch.nn.Module = net.layers[layer]
    return module


def test_pyloss_gradient_is_the_numeric_one(tmp_path: Path, layers: Path) -> None:
    loss = _kernel(spec(tmp_path, loss_net()), "loss")
    a = (0.1 * torch.randn(10, 12, dtype=torch.float64)).requires_grad_()
    b = (0.1 * torch.randn(10, 12, dtype=torch.float64)).requires_grad_()
    out = loss(a, b)
    out.backward()
    # Central differences, by hand: gradcheck also checks that backward scales with the
    # top's diff, which Caffe's pyloss does not (it is right for loss_weight 1 only, as
    # in Caffe). pyloss sums its difference in float32: small values and a step float32
    # resolves keep the rounding below the tolerance.
    eps = 1e-3
    for x in (a, b):
        numeric = torch.zeros_like(x)
        with torch.no_grad():
            for i in range(x.numel()):
                x.view(-1)[i] += eps
                up = loss(a, b).item()
                x.view(-1)[i] -= 2 * eps
                down = loss(a, b).item()
                x.view(-1)[i] += eps
                numeric.view(-1)[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(x.grad, numeric, atol=1e-4, rtol=1e-3)


def test_param_str_layer_gradient_is_the_numeric_one(tmp_path: Path, layers: Path) -> None:
    sq = _kernel(spec(tmp_path, square_net()), "sq")
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(sq(x), 2.5 * x**2 - 1)
    assert torch.autograd.gradcheck(sq, (x,))  # float64 throughout: default tolerances


def test_propagate_down_is_per_bottom(tmp_path: Path, layers: Path) -> None:
    text = square_net().replace('bottom: "x"', 'bottom: "x" bottom: "x2"').replace(
        "ScaledSquare", "Product").replace(
        'input: "x"', 'input: "x2"\ninput_shape { dim: 4 dim: 3 }\ninput: "x"')
    prod = _kernel(spec(tmp_path, text), "sq")
    seen = sys.modules["square_layers"].Product.seen
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3)
    prod(a, b).sum().backward()
    assert seen == [[True, False]]
    torch.testing.assert_close(a.grad, b)


def test_the_layer_sees_its_nets_phase(tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, square_net())
    x = torch.randn(4, 3)
    netdsl.compile(path, "test", "cpu")(x=x)
    netdsl.compile(path, "train", "cpu")(x=x)
    log = sys.modules["square_layers"].ScaledSquare.log
    assert ("forward", "TEST") in log and ("forward", "TRAIN") in log
    assert ("setup", "TRAIN", True) in log  # shapes set the layer up in TRAIN


def test_shapes_run_setup_and_reshape_in_the_nets_phase(
        tmp_path: Path, layers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = square_net().replace("ScaledSquare", "PhaseWidth").replace("dim: 3", "dim: 7")
    path = spec(tmp_path, text)
    assert infer_shapes(netdsl.load(path, "train")).blobs["y"] == (4, 7)
    assert infer_shapes(netdsl.load(path, "test")).blobs["y"] == (4, 3)
    assert main(["shapes", str(path), "--phase", "test", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["blobs"]["y"] == [4, 3]
    assert netdsl.compile(path, "test", "cpu")(x=torch.ones(4, 7))["y"].shape == (4, 3)


def test_a_python_data_layer_runs_forward_only(tmp_path: Path, layers: Path) -> None:
    text = """\
name: "ramp"
layer { name: "data" type: "Python" top: "data" top: "label"
  python_param { module: "square_layers" layer: "RampData" param_str: "4,3" } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 1 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
    path = spec(tmp_path, text)
    table = infer_shapes(netdsl.load(path))
    assert (table.blobs["data"], table.blobs["label"]) == ((4, 3), (4,))
    net = netdsl.compile(path, "train", "cpu", seed=0)
    out = net()
    torch.testing.assert_close(net(outputs=["data"])["data"],
                               torch.arange(12.0).reshape(4, 3) / 10)
    net.loss(out).backward()  # nothing asks the data layer for a gradient
    assert net.layers["ip"].weight.grad is not None


def test_errors_in_forward_and_a_missing_backward_are_diagnostics(
        tmp_path: Path, layers: Path) -> None:
    broken = _kernel(spec(tmp_path, square_net().replace("ScaledSquare", "Broken")), "sq")
    with pytest.raises(NetdslError) as info:
        broken(torch.randn(4, 3))
    assert info.value.message == ("square_layers.Broken.forward raised ValueError: "
                                  "forward went wrong")
    assert info.value.span.path == str(layers / "square_layers.py")
    ramp_like = square_net().replace("ScaledSquare", "RampData").replace(
        "{'scale': 2.5, 'shift': -1}", "4,3").replace('top: "y"', 'top: "y" top: "z"')
    ramp = _kernel(spec(tmp_path, ramp_like), "sq")
    y, _ = ramp(torch.randn(4, 3, requires_grad=True))
    with pytest.raises(NetdslError, match="has no backward"):
        y.sum().backward()


def test_compiled_with_torch_compile_the_layer_breaks_the_graph(
        tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, square_net())
    net = netdsl.compile(path, "test", "cpu", torch_compile={"backend": "eager"})
    x = torch.randn(4, 3)
    torch.testing.assert_close(net(x=x)["y"], 2.5 * x**2 - 1)


@pytest.mark.gpu
def test_tensors_go_to_the_cpu_and_back(tmp_path: Path, layers: Path) -> None:
    net = netdsl.compile(spec(tmp_path, loss_net()), "train", "cuda")
    a = torch.randn(10, 12, device="cuda", requires_grad=True)
    b = torch.randn(10, 12, device="cuda")
    out = net(a=a, b=b)
    assert out["loss"].device.type == "cuda"
    net.loss(out).backward()
    assert a.grad is not None and a.grad.device.type == "cuda"
    torch.testing.assert_close(a.grad, (a - b).detach() / 10)


# --- Faster R-CNN's proposal layer ---------------------------------------------------------


def test_proposal_layer_shapes_and_forward(
        tmp_path: Path, layers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec(tmp_path, RPN_NET)
    assert main(["shapes", str(path), "--phase", "test", "--format", "json"]) == 0
    blobs = json.loads(capsys.readouterr().out)["blobs"]
    assert blobs["rpn_cls_prob_reshape"] == [1, 18, 4, 5]
    assert (blobs["rois"], blobs["scores"]) == ([1, 5], [1, 1, 1, 1])  # as setup says
    for phase, rois in (("test", 50), ("train", 100)):  # POST_NMS_TOP_N of cfg[str(phase)]
        net = netdsl.compile(path, phase, "cpu", seed=0)
        got = net(data=torch.randn(1, 3, 64, 80), im_info=torch.tensor([[64.0, 80.0, 1.0]]))
        boxes, scores = got["rois"], got["scores"]
        assert boxes.shape == (rois, 5) and scores.shape == (rois, 1)
        assert (boxes[:, 0] == 0).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 79).all()
        assert (boxes[:, 2::2] >= 0).all() and (boxes[:, 2::2] <= 63).all()
        assert (scores[:-1] >= scores[1:]).all()  # best first


def test_proposal_layer_with_pythonpath_from_the_command_line(
        tmp_path: Path, layers: Path) -> None:
    path = spec(tmp_path, RPN_NET)
    env = {**os.environ, "PYTHONPATH": str(layers)}
    cli = [sys.executable, "-m", "netdsl.cli", "shapes", str(path), "--phase", "test"]
    done = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Python" in done.stdout and "1×5" in done.stdout
    env.pop("PYTHONPATH")
    done = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 1
    assert "cannot import Python layer module 'rpn.proposal_layer'" in done.stderr
    assert "Traceback" not in done.stderr


def test_convert_keeps_python_param_both_ways(
        tmp_path: Path, layers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec(tmp_path, RPN_NET)
    net_file, back = tmp_path / "rpn.net", tmp_path / "back.prototxt"
    assert main(["convert", str(path), "-o", str(net_file)]) == 0
    assert main(["convert", str(net_file), "--to", "prototxt", "-o", str(back)]) == 0
    text = back.read_text()
    assert "python_param" in text and "param_str: \"'feat_stride': 16\"" in text
    shapes = [infer_shapes(netdsl.load(p, "test")).blobs for p in (path, net_file, back)]
    assert shapes[0] == shapes[1] == shapes[2]


def test_input_gives_a_python_data_layer_its_shapes_when_its_module_is_missing(
        tmp_path: Path) -> None:
    """A Python data layer (no bottoms) whose module is not on the path: --input says
    what its tops hold, as for a Data layer whose database is elsewhere."""
    path = spec(tmp_path, """
name: "pydata"
layer { name: "data" type: "Python" top: "data" top: "label"
        python_param { module: "not_installed_anywhere" layer: "Reader" } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 4 } }
""")
    net = netdsl.load(path)
    with pytest.raises(NetdslError, match="not_installed_anywhere"):
        infer_shapes(net)
    table = infer_shapes(net, batch=5, inputs={"data": (3, 8, 8), "label": ()})
    assert table.blobs["data"] == (5, 3, 8, 8) and table.blobs["label"] == (5,)
    assert table.blobs["fc"] == (5, 4)
