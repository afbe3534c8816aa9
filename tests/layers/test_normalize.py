"""Normalize (SSD's Caffe, weiliu89/caffe, normalize_layer.cpp): shapes, the scale blob,
and forward and backward against numpy transcriptions of Forward_cpu / Backward_cpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.layers.base import Filler, FillerType

from .helpers import close, kind, lower, params, params_from_text, shape_error, shapes
from .roundtrip import round_trip


def _forward(x: np.ndarray, scale: np.ndarray, across: bool, shared: bool, eps: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Forward_cpu per example: (top, norm)."""
    n, c = x.shape[:2]
    s = int(np.prod(x.shape[2:]))
    b = x.reshape(n, c, s)
    top = np.empty_like(b)
    norms = np.full((n, 1 if across else s), eps)
    for i in range(n):
        sq = b[i] ** 2
        if across:
            norms[i, 0] = (sq.sum() + eps) ** 0.5
            top[i] = b[i] * (1.0 / norms[i, 0])
        else:
            norms[i] += sq.sum(axis=0)  # gemv onto the eps-filled norm
            norms[i] = norms[i] ** 0.5
            top[i] = b[i] / norms[i][None, :]
        top[i] *= scale if shared else scale[:, None]
    return top.reshape(x.shape), norms


def _backward(x: np.ndarray, top: np.ndarray, top_diff: np.ndarray, norms: np.ndarray,
              scale: np.ndarray, across: bool, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Backward_cpu: (bottom_diff, scale_diff)."""
    n, c = x.shape[:2]
    b, t, g = (a.reshape(n, c, -1) for a in (x, top, top_diff))
    if shared:
        scale_diff = np.array((t * g).sum() / scale)
    else:
        scale_diff = ((t * g).sum(axis=2) / scale[None, :]).sum(axis=0)
    bottom_diff = np.empty_like(b)
    for i in range(n):
        if across:
            a = (b[i] * g[i]).sum()
            bottom_diff[i] = (g[i] - b[i] * (a / norms[i, 0] / norms[i, 0])) / norms[i, 0]
        else:
            a = (b[i] * g[i]).sum(axis=0)[None, :]
            bottom_diff[i] = (g[i] - b[i] * a / norms[i][None, :] ** 2) / norms[i][None, :]
        bottom_diff[i] *= scale if shared else scale[:, None]
    return bottom_diff.reshape(x.shape), scale_diff


def test_shapes_and_blob() -> None:
    assert shapes("Normalize", ((2, 512, 38, 38),)) == ((2, 512, 38, 38),)
    assert shapes("Normalize", ((2, 10),)) == ((2, 10),)
    k = kind("Normalize")
    assert k.param_shapes(params("Normalize"), ((2, 8, 3, 3),)) == {"scale": ()}
    assert k.param_shapes(params("Normalize", channel_shared=False), ((2, 8, 3, 3),)) == {
        "scale": (8,)}
    assert k.fillers(params("Normalize"))["scale"] == Filler(FillerType.constant, value=1.0)


def test_checks() -> None:
    shape_error("Normalize", ((5,),), match="at least 2 axes")
    shape_error("Normalize", ((1, 2, 3, 4, 5),), match="at most 4 axes")


def test_params_from_caffe_text() -> None:
    p = params_from_text("Normalize", """norm_param { across_spatial: false channel_shared: false
        scale_filler { type: "constant" value: 20 } }""")
    assert not p.across_spatial and not p.channel_shared
    assert p.scale_filler == Filler(FillerType.constant, value=20.0)
    assert kind("Normalize").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


@pytest.mark.parametrize("across", [True, False])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (3, 6)])
def test_forward_and_backward(across: bool, shared: bool, shape: tuple[int, ...]) -> None:
    import torch

    m, tops = lower("Normalize", (shape,), across_spatial=across, channel_shared=shared,
                    eps=1e-3)
    m.kernel.double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    (y,) = m(x)
    scale = m.kernel.scale.detach().numpy()
    want, norms = _forward(x.detach().numpy(), scale, across, shared, 1e-3)
    close(y, want, 1e-12)
    assert tuple(y.shape) == tops[0]
    g = torch.randn(shape, dtype=torch.float64)
    y.backward(g)
    dx, ds = _backward(x.detach().numpy(), want, g.numpy(), norms, scale, across, shared)
    close(x.grad, dx, 1e-10)
    close(m.kernel.scale.grad, ds, 1e-10)


def test_convert_both_ways(tmp_path: Path) -> None:
    text = round_trip(tmp_path, """input: "conv4_3" input_shape { dim: 1 dim: 16 dim: 38 dim: 38 }
        layer { name: "conv4_3_norm" type: "Normalize" bottom: "conv4_3" top: "conv4_3_norm"
                norm_param { across_spatial: false channel_shared: false
                             scale_filler { type: "constant" value: 20 } } }""")
    assert "scale_filler: constant(20)" in text
