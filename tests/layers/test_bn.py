"""BN (fork: SegNet's Caffe, alexgkendall/caffe-segnet bn_layer.cpp; ENet's Caffe,
TimoSaemann/caffe-enet, has the same code): shapes, blobs, and the kernel against a numpy
transcription of Forward_cpu and Backward_cpu in both modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netdsl.layers.base import FillerType, Follow
from netdsl.layers.bn import BNMode

from .helpers import close, kind, lower, np_, params, params_from_text, shape_error, shapes
from .roundtrip import round_trip

VAR_EPS = 1e-9  # BNLayer::LayerSetUp: var_eps_ = 1e-9


def caffe_bn(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, dy: np.ndarray, learn: bool
             ) -> dict[str, np.ndarray]:
    """BNLayer::Forward_cpu and Backward_cpu, step for step (the gemv/gemm calls as sums
    and broadcasts over (N, C, H*W)). ``scale``/``shift`` are (C,)."""
    n, c, h, w = x.shape
    hw = h * w
    b = x.reshape(n, c, hw)
    td = dy.reshape(n, c, hw)
    sc, sh = scale[None, :, None], shift[None, :, None]
    out: dict[str, np.ndarray] = {}
    if learn:
        buf = b ** 2
        spatial_mean = b.sum(2) * (1.0 / hw)  # EX across spatial
        batch_mean = spatial_mean.sum(0) * (1.0 / n)  # EX across batch
        spatial_var = buf.sum(2) * (1.0 / hw)  # E(X^2) across spatial
        batch_var = spatial_var.sum(0) * (1.0 / n)  # E(X^2) across batch
        batch_var = batch_var - batch_mean ** 2  # variance
        out["mean"], out["var"] = batch_mean.copy(), batch_var.copy()
        top = b + (-1.0) * batch_mean[None, :, None]  # subtract mean
        batch_var = (batch_var + VAR_EPS) ** 0.5
        top = top / batch_var[None, :, None]
        x_norm = top.copy()
        top = top * sc
        top = top + sh
        # Backward_cpu, LEARN
        out["scale_diff"] = (x_norm * td).sum(2).sum(0)
        out["shift_diff"] = td.sum(2).sum(0)
        buf = td * sc  # scale * top_diff
        bd = x_norm * buf
        bm = bd.sum(2).sum(0)
        bd = np.broadcast_to(bm[None, :, None], b.shape)
        bd = x_norm * bd
        bm = buf.sum(2).sum(0)
        bd = bd + bm[None, :, None]
        bd = 1.0 * buf + (-1.0 / (n * hw)) * bd  # caffe_cpu_axpby
        bd = bd / batch_var[None, :, None]
    else:
        top = b * sc
        top = top + sh
        out["scale_diff"] = (b * td).sum(2).sum(0)
        out["shift_diff"] = td.sum(2).sum(0)
        bd = td * sc
    out["top"], out["bottom_diff"] = top.reshape(x.shape), bd.reshape(x.shape)
    return out


def test_fields_and_defaults_from_the_forks_proto() -> None:
    p = params_from_text("BN", "")
    assert p.bn_mode is BNMode.LEARN
    # FillerParameter's own default: constant 0 (SegNet's and ENet's nets write 1 / 0.001)
    assert p.scale_filler.type is FillerType.constant and p.scale_filler.value == 0
    p = params_from_text("BN", 'bn_param { scale_filler { type: "constant" value: 1 } '
                               'shift_filler { type: "constant" value: 0.001 } '
                               "bn_mode: INFERENCE }")
    assert p.bn_mode is BNMode.INFERENCE
    assert (p.scale_filler.value, p.shift_filler.value) == (1, 0.001)
    k = kind("BN")
    assert k.blobs == ("scale", "shift") and k.learned
    assert k.fillers(p) == {"scale": p.scale_filler, "shift": p.shift_filler}


def test_shapes_blobs_and_statistics_tops() -> None:
    assert shapes("BN", ((2, 16, 8, 8),)) == ((2, 16, 8, 8),)
    assert shapes("BN", ((2, 16, 8, 8),), tops=3) == ((2, 16, 8, 8), (1, 16, 1, 1),
                                                      (1, 16, 1, 1))
    assert shapes("BN", ((2, 16),)) == ((2, 16, 1, 1),)  # Reshape(num, channels, h, w)
    assert kind("BN").param_shapes(params("BN"), ((2, 16, 8, 8),)) == {
        "scale": (1, 16, 1, 1), "shift": (1, 16, 1, 1)}
    assert kind("BN").follow is Follow.CHANNELS


def test_inference_mode_makes_one_top() -> None:
    """MaxTopBlobs: 3 in LEARN, 1 in INFERENCE."""
    shape_error("BN", ((2, 4, 3, 3),), tops=2, match="INFERENCE makes one top",
                field="top", bn_mode=BNMode.INFERENCE)
    shape_error("BN", ((2, 3, 4, 5, 6),), match="at most 4 axes")


@pytest.mark.parametrize("learn", [True, False])
def test_forward_and_backward_match_caffe(learn: bool) -> None:
    shape = (3, 4, 5, 6)
    mode = BNMode.LEARN if learn else BNMode.INFERENCE
    m, tops = lower("BN", (shape,), tops=3 if learn else 1, bn_mode=mode, seed=2)
    m.kernel.double()
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    dy = torch.randn(shape, generator=g, dtype=torch.float64)
    outs = m(x)
    assert [tuple(o.shape) for o in outs] == list(tops)
    outs[0].backward(dy)
    scale, shift = m.kernel.scale, m.kernel.shift
    ref = caffe_bn(np_(x), np_(scale).ravel(), np_(shift).ravel(), np_(dy), learn)
    close(outs[0], ref["top"], 1e-11)
    assert x.grad is not None and scale.grad is not None and shift.grad is not None
    close(x.grad, ref["bottom_diff"], 1e-11)
    close(scale.grad.ravel(), ref["scale_diff"], 1e-11)
    close(shift.grad.ravel(), ref["shift_diff"], 1e-11)
    if learn:
        close(outs[1].ravel(), ref["mean"], 1e-12)
        close(outs[2].ravel(), ref["var"], 1e-11)
        assert not outs[1].requires_grad and not outs[2].requires_grad  # Caffe ignores them


def test_learn_uses_batch_statistics_in_the_test_phase_too() -> None:
    m, _ = lower("BN", ((2, 3, 4, 4),))
    x = torch.randn(2, 3, 4, 4)
    m.kernel.train()
    (a,) = m(x)
    m.kernel.eval()
    (b,) = m(x)
    assert torch.equal(a, b)
    assert list(m.kernel.parameters()) and not list(m.kernel.buffers())  # no running stats


def test_two_axis_bottom() -> None:
    m, tops = lower("BN", ((5, 3),), bn_mode=BNMode.INFERENCE)
    x = torch.randn(5, 3)
    (y,) = m(x)
    assert tops[0] == (5, 3, 1, 1) == tuple(y.shape)
    close(y, np_(x)[:, :, None, None] * np_(m.kernel.scale) + np_(m.kernel.shift))


def test_convert_round_trip(tmp_path: Path) -> None:
    """SegNet's form (in place, LEARN, both fillers) and ENet's (INFERENCE, param blocks)."""
    round_trip(tmp_path, """name: "n"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { bottom: "conv" top: "conv" name: "conv_bn" type: "BN"
        bn_param { scale_filler { type: "constant" value: 1 }
                   shift_filler { type: "constant" value: 0.001 } } }
layer { name: "bn2" type: "BN" bottom: "conv" top: "bn2" top: "bn2_mean" top: "bn2_var" }
layer { name: "bn3" type: "BN" bottom: "bn2" top: "bn3"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 decay_mult: 0 }
        bn_param { bn_mode: INFERENCE } }
""")
