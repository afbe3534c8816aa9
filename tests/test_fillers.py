"""Fillers against Caffe's formulas (include/caffe/filler.hpp), seeding and placement."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.diagnostics import SpecError
from netdsl.fillers import (
    FillerError,
    fan_in_out,
    fill_,
    generator,
    msra_std,
    problem,
    xavier_scale,
)
from netdsl.layers.base import Filler, FillerType, VarianceNorm
from tests.test_placement import build_text

G = FillerType


def filled(shape: tuple[int, ...], f: Filler, seed: int = 0,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return fill_(torch.empty(shape, dtype=dtype), f, generator(seed))


def test_constant() -> None:
    t = filled((7, 3), Filler(G.constant, value=0.25))
    assert torch.all(t == 0.25)
    assert torch.all(filled((4,), Filler()) == 0)  # Caffe's default filler: constant 0


def test_gaussian_statistics() -> None:
    t = filled((1000, 1000), Filler(G.gaussian, mean=0.5, std=0.01))
    assert abs(t.mean().item() - 0.5) < 1e-4
    assert abs(t.std().item() - 0.01) < 1e-4


def test_uniform_statistics() -> None:
    t = filled((1000, 1000), Filler(G.uniform, min=-2.0, max=3.0))
    assert t.min() >= -2.0 and t.max() < 3.0
    assert abs(t.mean().item() - 0.5) < 0.01
    assert abs(t.var().item() - 25 / 12) < 0.01  # (b - a)^2 / 12


def test_fans_are_caffes_integer_counts() -> None:
    # conv1 of AlexNet: fan_in = 3 * 11 * 11, fan_out = 96 * 11 * 11
    assert fan_in_out((96, 3, 11, 11)) == (363, 11616)
    # InnerProduct (out, in)
    assert fan_in_out((4096, 9216)) == (9216, 4096)
    # a 1-axis blob: fan_in = 1, fan_out = count (Caffe's "compatibility with ND blobs")
    assert fan_in_out((10,)) == (1, 10)


#: Each variance_norm and the n it divides by, for a (128, 64, 3, 3) blob.
NORMS = [(VarianceNorm.FAN_IN, 64 * 9), (VarianceNorm.FAN_OUT, 128 * 9),
         (VarianceNorm.AVERAGE, (64 * 9 + 128 * 9) / 2)]


@pytest.mark.parametrize("norm,n", NORMS)
def test_xavier_scale(norm: VarianceNorm, n: float) -> None:
    shape = (128, 64, 3, 3)
    scale = math.sqrt(3.0 / n)
    assert xavier_scale(shape, norm) == pytest.approx(scale)
    t = filled(shape, Filler(G.xavier, variance_norm=norm))
    assert t.abs().max() <= scale
    assert t.abs().max() > 0.99 * scale
    assert t.var().item() == pytest.approx(scale**2 / 3, rel=0.03)  # U(-a, a): a^2 / 3


@pytest.mark.parametrize("norm,n", NORMS)
def test_msra_std(norm: VarianceNorm, n: float) -> None:
    shape = (128, 64, 3, 3)
    std = math.sqrt(2.0 / n)
    assert msra_std(shape, norm) == pytest.approx(std)
    t = filled(shape, Filler(G.msra, variance_norm=norm))
    assert t.std().item() == pytest.approx(std, rel=0.02)
    assert abs(t.mean().item()) < 0.02 * std * 10


def test_bilinear_is_the_interpolation_kernel() -> None:
    # 2x upsampling (kernel 4, stride 2): 1-D weights 1/4, 3/4, 3/4, 1/4
    t = filled((3, 1, 4, 4), Filler(G.bilinear))
    w = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for c in range(3):
        torch.testing.assert_close(t[c, 0], w[:, None] * w[None, :])
    # odd kernel 3: 1/2, 1, 1/2 (Caffe 1.0's c = (k - 1) / (2 f))
    w3 = torch.tensor([0.5, 1.0, 0.5])
    torch.testing.assert_close(filled((1, 2, 3, 3), Filler(G.bilinear))[0, 1],
                               w3[:, None] * w3[None, :])
    with pytest.raises(FillerError, match="square"):
        filled((1, 1, 3, 4), Filler(G.bilinear))


def test_positive_unitball_rows_sum_to_one() -> None:
    t = filled((20, 3, 5, 5), Filler(G.positive_unitball))
    assert t.min() >= 0 and t.max() <= 1
    torch.testing.assert_close(t.view(20, -1).sum(1), torch.ones(20))


def test_sparse_gaussian_keeps_sparse_over_outputs() -> None:
    # Caffe keeps each weight with probability sparse / shape[0]
    t = filled((100, 2000), Filler(G.gaussian, std=1.0, sparse=10))
    kept = (t != 0).float().mean().item()
    assert kept == pytest.approx(0.1, abs=0.005)
    with pytest.raises(FillerError, match="sparse"):
        filled((5, 5), Filler(G.xavier, sparse=2))
    with pytest.raises(FillerError, match="outputs"):
        filled((5, 5), Filler(G.gaussian, sparse=10))


def test_seeded_and_reproducible() -> None:
    f = Filler(G.gaussian, std=1.0)
    assert torch.equal(filled((50, 50), f, seed=3), filled((50, 50), f, seed=3))
    assert not torch.equal(filled((50, 50), f, seed=3), filled((50, 50), f, seed=4))


def test_values_do_not_depend_on_dtype() -> None:
    f = Filler(G.uniform, min=-1.0, max=1.0)
    a = filled((30, 30), f, seed=5)
    b = filled((30, 30), f, seed=5, dtype=torch.float64)
    assert torch.equal(a.double(), b)
    nc = torch.empty(30, 30).t()  # not contiguous: filled through a copy, same values
    assert torch.equal(fill_(nc, f, generator(5)), a)


SMALL = """
devices: ["gpu:0", "gpu:1"]
input { name: "data" shape: [4, 10, 10] }
layer { name: "conv" type: Convolution bottom: "data" num_output: 8 kernel_size: 3 group: 2
        weight_filler { type: "xavier" } bias_filler { type: "gaussian" std: 1 } }
layer { name: "ip" type: InnerProduct bottom: "conv" num_output: 6
        weight_filler { type: "msra" } bias_filler { type: "uniform" } }
"""


def test_same_seed_same_weights_whatever_the_placement(tmp_path: Path) -> None:
    net = build_text(SMALL, tmp_path)
    two = {"gpu:0": "cpu", "gpu:1": "cpu"}
    sharded = netdsl.compile(net, devices=two, seed=11, fuse=False).state_dict()
    fused = netdsl.compile(net, devices=two, seed=11).state_dict()
    one_net = build_text(SMALL.replace('["gpu:0", "gpu:1"]', '["gpu:0"]'), tmp_path, name="1.net")
    one = netdsl.compile(one_net, devices="cpu", seed=11).state_dict()
    assert list(sharded) == list(fused) == list(one) == [
        "conv.weight", "conv.bias", "ip.weight", "ip.bias"]
    for k in one:
        assert torch.equal(sharded[k], one[k]) and torch.equal(fused[k], one[k]), k
    other = netdsl.compile(net, devices=two, seed=12).state_dict()
    assert not torch.equal(other["conv.weight"], one["conv.weight"])
    # the xavier scale of the grouped conv weight (8, 2, 3, 3): fan_in 18
    assert one["conv.weight"].abs().max() <= math.sqrt(3 / 18)


def test_spec_random_seed_is_used(tmp_path: Path) -> None:
    net = build_text(SMALL + "solver { random_seed: 5 }\n", tmp_path)
    a = netdsl.compile(net, devices="cpu").state_dict()
    b = netdsl.compile(net, devices="cpu").state_dict()
    c = netdsl.compile(net, devices="cpu", seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)


def test_global_torch_seed_makes_unseeded_compiles_repeatable(tmp_path: Path) -> None:
    net = build_text(SMALL, tmp_path)
    torch.manual_seed(1)
    a = netdsl.compile(net, devices="cpu").state_dict()
    torch.manual_seed(1)
    b = netdsl.compile(net, devices="cpu").state_dict()
    assert torch.equal(a["ip.weight"], b["ip.weight"])


def test_bad_filler_is_a_spec_error_at_the_layer(tmp_path: Path) -> None:
    net = build_text(SMALL.replace('type: "xavier"', 'type: "xavier" sparse: 3'), tmp_path)
    with pytest.raises(SpecError, match="sparse") as e:
        netdsl.compile(net, devices="cpu")
    assert e.value.span.line == 5  # the weight_filler field


# --- settings Caffe's fillers CHECK (include/caffe/filler.hpp, util/math_functions.cpp) --

INF, NAN = math.inf, math.nan

BAD_SETTINGS = [
    # (filler, the Filler field the problem is about, message fragment)
    (Filler(G.gaussian, std=-1.0), "std", "std must be positive"),
    (Filler(G.gaussian, std=0.0), "std", "std must be positive"),  # CHECK_GT(sigma, 0)
    (Filler(G.gaussian, std=NAN), "std", "std is NaN"),
    (Filler(G.gaussian, std=INF), "std", "std is infinite"),
    (Filler(G.gaussian, std=1e39), "std", "past float32's range"),
    (Filler(G.gaussian, mean=NAN), "mean", "mean is NaN"),
    (Filler(G.gaussian, mean=-INF), "mean", "mean is infinite"),
    (Filler(G.gaussian, sparse=-2), "sparse", "sparse must be -1 or more"),
    (Filler(G.uniform, min=-INF, max=INF), "min", "min is infinite"),
    (Filler(G.uniform, min=0.0, max=NAN), "max", "max is NaN"),
    (Filler(G.uniform, min=1.0, max=-1.0), "min", "min 1 is more than max -1"),  # CHECK_LE
    (Filler(G.uniform, min=-3e38, max=3e38), "max", "wider than float32"),
    (Filler(G.constant, value=NAN), "value", "value is NaN"),
    (Filler(G.constant, value=INF), "value", "value is infinite"),
    (Filler(G.constant, sparse=3), "sparse", "only supported by the gaussian"),
    (Filler(G.uniform, sparse=0), "sparse", "only supported by the gaussian"),
    (Filler(G.xavier, sparse=1), "sparse", "only supported by the gaussian"),
    (Filler(G.msra, sparse=1), "sparse", "only supported by the gaussian"),
    (Filler(G.positive_unitball, sparse=1), "sparse", "only supported by the gaussian"),
    (Filler(G.bilinear, sparse=1), "sparse", "only supported by the gaussian"),
]


@pytest.mark.parametrize("f,field,message", BAD_SETTINGS,
                         ids=[f"{f.type.value}-{m[:20]}" for f, _, m in BAD_SETTINGS])
def test_settings_caffe_checks_are_problems(f: Filler, field: str, message: str) -> None:
    bad = problem(f)
    assert bad is not None and message in str(bad) and bad.field == field
    with pytest.raises(FillerError, match="."):  # and fill_ refuses them the same way
        filled((4, 3, 2, 2), f)


@pytest.mark.parametrize("f", [
    Filler(), Filler(G.gaussian, std=1e-30, mean=-5.0), Filler(G.uniform, min=2.0, max=2.0),
    Filler(G.uniform, min=-1e38, max=1e38), Filler(G.constant, value=-3e38),
    Filler(G.gaussian, sparse=0), Filler(G.xavier, std=-1.0, min=5.0, max=1.0),  # unread
])
def test_settings_caffe_takes_are_not(f: Filler) -> None:
    assert problem(f) is None
    assert problem(f, (4, 3, 2, 2)) is None
    assert torch.isfinite(filled((4, 3, 2, 2), f)).all()


@pytest.mark.parametrize("f,shape,message", [
    (Filler(G.gaussian, sparse=5), (4, 3), "sparse 5 is more than the blob's 4 outputs"),
    (Filler(G.bilinear), (4, 3), "needs a 4-D blob"),
    (Filler(G.bilinear), (1, 1, 3, 4), "square kernels"),
])
def test_problems_with_the_blob_shape(f: Filler, shape: tuple[int, ...], message: str) -> None:
    assert problem(f) is None
    bad = problem(f, shape)
    assert bad is not None and message in str(bad)
    assert problem(f, (0, *shape[1:])) is None  # an empty blob is never filled


def test_a_bad_setting_is_refused_by_shapes_at_the_filler(tmp_path: Path) -> None:
    from netdsl.shapes import infer_shapes

    net = build_text(SMALL.replace('type: "xavier"', 'type: "gaussian" std: -0.5'), tmp_path)
    with pytest.raises(SpecError, match="std must be positive, got -0.5") as e:
        infer_shapes(net)
    assert e.value.span.line == 5  # the weight_filler field
    assert e.value.hint is not None and "constant" in e.value.hint


def test_fillers_import_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from netdsl.fillers import problem; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
