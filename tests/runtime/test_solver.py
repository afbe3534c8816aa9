"""CaffeOptimizer against an independent numpy transcription of Caffe's solvers, and
SolverConfig's validation."""

import dataclasses
import enum
import math
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import netdsl
from netdsl.diagnostics import DataError, ErrorList, Span, SpecError
from netdsl.runtime.lr_policy import learning_rate
from netdsl.runtime.solver import CaffeOptimizer
from netdsl.sections import SolverConfig, SolverType, resolve_max_iter

# --------------------------------------------------------------------------- reference
#
# Caffe's Solver::ApplyUpdate, written out in numpy (float64) from sgd_solver.cpp and the
# per-type ComputeUpdateValue in nesterov/adagrad/rmsprop/adadelta/adam_solver.cpp:
#   ClipGradients (global L2 norm of the accumulated diffs), then for each blob
#   Normalize (diff *= 1/iter_size), Regularize (diff += local_decay * w or sign(w)),
#   ComputeUpdateValue (diff <- update, history updated), and Net::Update (w -= diff).


class CaffeReference:
    def __init__(
        self,
        cfg: SolverConfig,
        weights: list[np.ndarray],
        lr_mult: list[float],
        decay_mult: list[float],
    ) -> None:
        self.cfg = cfg
        self.w = [x.copy() for x in weights]
        self.lr_mult = lr_mult
        self.decay_mult = decay_mult
        n = len(weights)
        # Caffe's history_ vector: N blobs, plus N more for AdaDelta and Adam.
        extra = cfg.type in (SolverType.AdaDelta, SolverType.Adam)
        self.history = [np.zeros_like(weights[i % n]) for i in range(2 * n if extra else n)]
        self.iter = 0

    def apply_update(self, diffs: list[np.ndarray], rate: float) -> None:
        c = self.cfg
        n = len(self.w)
        diff = [d.copy() for d in diffs]
        if c.clip_gradients >= 0:
            l2 = math.sqrt(sum(float(np.sum(d * d)) for d in diff))
            if l2 > c.clip_gradients:
                diff = [d * (c.clip_gradients / l2) for d in diff]
        for i in range(n):
            if c.iter_size != 1:
                diff[i] = diff[i] * (1.0 / c.iter_size)
            local_decay = c.weight_decay * self.decay_mult[i]
            if local_decay:
                if c.regularization_type == "L2":
                    diff[i] = diff[i] + local_decay * self.w[i]
                else:
                    diff[i] = diff[i] + local_decay * np.sign(self.w[i])
            local_rate = rate * self.lr_mult[i]
            g = diff[i]
            h = self.history
            if c.type is SolverType.SGD:
                h[i] = local_rate * g + c.momentum * h[i]
                upd = h[i]
            elif c.type is SolverType.Nesterov:
                saved = h[i].copy()
                h[i] = local_rate * g + c.momentum * h[i]
                upd = (1 + c.momentum) * h[i] - c.momentum * saved
            elif c.type is SolverType.AdaGrad:
                h[i] = h[i] + g**2
                upd = local_rate * (g / (np.sqrt(h[i]) + c.delta))
            elif c.type is SolverType.RMSProp:
                h[i] = (1 - c.rms_decay) * g**2 + c.rms_decay * h[i]
                upd = local_rate * (g / (np.sqrt(h[i]) + c.delta))
            elif c.type is SolverType.AdaDelta:
                h[i] = (1 - c.momentum) * g**2 + c.momentum * h[i]
                ratio = (h[n + i] + c.delta) / (h[i] + c.delta)
                u = g * np.sqrt(ratio)
                h[n + i] = (1 - c.momentum) * u**2 + c.momentum * h[n + i]
                upd = local_rate * u
            elif c.type is SolverType.Adam:
                b1, b2 = c.momentum, c.momentum2
                t = self.iter + 1
                correction = math.sqrt(1 - b2**t) / (1 - b1**t)
                h[i] = (1 - b1) * g + b1 * h[i]
                h[n + i] = (1 - b2) * g * g + b2 * h[n + i]
                upd = local_rate * correction * (h[i] / (np.sqrt(h[n + i]) + c.delta))
            else:
                raise AssertionError(c.type)
            self.w[i] = self.w[i] - upd
        self.iter += 1


# --------------------------------------------------------------------------- problem
#
# A quadratic per blob, loss_k = sum(0.5 * a * w^2 + b_k * w), whose gradient a * w + b_k
# depends on the weights, so the two trajectories only agree if every step does.

SHAPES = [(3, 4), (4,), (2, 3, 2)]
GROUPS = [[0, 1], [2]]  # blob indices per param group
GROUP_MULTS = [(1.0, 1.0), (2.0, 0.0)]  # (lr_mult, decay_mult): weights-like, bias-like


class Problem:
    def __init__(self, seed: int, steps: int, iter_size: int) -> None:
        rng = np.random.default_rng(seed)
        self.w0 = [rng.normal(size=s) for s in SHAPES]
        self.a = [rng.uniform(0.5, 2.0, size=s) for s in SHAPES]
        self.b = [
            [[rng.normal(size=s) for s in SHAPES] for _ in range(iter_size)] for _ in range(steps)
        ]
        self.iter_size = iter_size

    def numpy_diffs(self, w: list[np.ndarray], step: int) -> list[np.ndarray]:
        # Caffe accumulates the diffs of iter_size forward/backward passes.
        return [
            sum(self.a[i] * w[i] + self.b[step][k][i] for k in range(self.iter_size))
            for i in range(len(w))
        ]

    def torch_params(self) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(torch.tensor(x, dtype=torch.float64)) for x in self.w0]

    def backward(self, params: list[torch.nn.Parameter], step: int) -> None:
        for k in range(self.iter_size):
            loss = sum(
                (0.5 * torch.from_numpy(self.a[i]) * p**2).sum()
                + (torch.from_numpy(self.b[step][k][i]) * p).sum()
                for i, p in enumerate(params)
            )
            loss.backward()


def make_optimizer(params: list[torch.nn.Parameter], cfg: SolverConfig) -> CaffeOptimizer:
    groups = [
        {"params": [params[i] for i in idx], "lr_mult": lm, "decay_mult": dm}
        for idx, (lm, dm) in zip(GROUPS, GROUP_MULTS, strict=True)
    ]
    return CaffeOptimizer(groups, cfg)


def blob_mults() -> tuple[list[float], list[float]]:
    lr_mult = [0.0] * len(SHAPES)
    decay_mult = [0.0] * len(SHAPES)
    for idx, (lm, dm) in zip(GROUPS, GROUP_MULTS, strict=True):
        for i in idx:
            lr_mult[i], decay_mult[i] = lm, dm
    return lr_mult, decay_mult


def run_both(cfg: SolverConfig, lrs: list[float], seed: int = 0):
    prob = Problem(seed, len(lrs), cfg.iter_size)
    lr_mult, decay_mult = blob_mults()
    ref = CaffeReference(cfg, prob.w0, lr_mult, decay_mult)
    params = prob.torch_params()
    opt = make_optimizer(params, cfg)
    for s, lr in enumerate(lrs):
        ref.apply_update(prob.numpy_diffs(ref.w, s), lr)
        opt.zero_grad()
        prob.backward(params, s)
        opt.step(lr)
    return ref, params, opt


def assert_matches(ref: CaffeReference, params: list[torch.nn.Parameter]) -> None:
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.detach().numpy(), ref.w[i], rtol=1e-10, atol=1e-12)


TYPE_SETTINGS: dict[SolverType, dict[str, float]] = {
    SolverType.SGD: {"momentum": 0.9},
    SolverType.Nesterov: {"momentum": 0.9},
    SolverType.AdaGrad: {"delta": 1e-6},
    SolverType.RMSProp: {"rms_decay": 0.95, "delta": 1e-6},
    SolverType.AdaDelta: {"momentum": 0.95, "delta": 1e-6},
    SolverType.Adam: {"momentum": 0.9, "momentum2": 0.999},
}

VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "l2": {"weight_decay": 0.05},
    "l1": {"weight_decay": 0.05, "regularization_type": "L1"},
    "iter_size2": {"iter_size": 2, "weight_decay": 0.01},
    "clipped": {"clip_gradients": 0.5, "weight_decay": 0.01},
    "clip_inactive": {"clip_gradients": 1e6},
    "all": {
        "iter_size": 2,
        "clip_gradients": 1.0,
        "weight_decay": 0.02,
        "regularization_type": "L1",
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("stype", list(SolverType), ids=lambda t: t.value)
def test_matches_caffe_reference(stype: SolverType, variant: str) -> None:
    cfg = SolverConfig(type=stype, **TYPE_SETTINGS[stype], **VARIANTS[variant])
    cfg.validate()
    lrs = [0.05, 0.05, 0.04, 0.03, 0.01, 0.01]
    if stype is SolverType.AdaDelta:
        lrs = [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    ref, params, opt = run_both(cfg, lrs)
    assert_matches(ref, params)
    assert opt.iteration == len(lrs)
    # the weights really moved, and the bias-like group really used lr_mult 2
    assert not np.allclose(params[0].detach().numpy(), Problem(0, 1, 1).w0[0])


def test_clipping_is_active_in_the_clipped_variant() -> None:
    # Sanity check of the test itself: clipping at 0.5 must change the trajectory.
    base = dict(momentum=0.9, weight_decay=0.01)
    _, p_clip, _ = run_both(SolverConfig(clip_gradients=0.5, **base), [0.05] * 3)
    _, p_free, _ = run_both(SolverConfig(**base), [0.05] * 3)
    assert not torch.allclose(p_clip[0], p_free[0])


def test_clip_uses_the_global_norm_before_normalization() -> None:
    # iter_size 2, gradient [3, 4] accumulated twice -> diff [6, 8], norm 10 > clip 5:
    # scaled to [3, 4], then normalized by 1/2 -> [1.5, 2]; SGD with no momentum, lr 1.
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = CaffeOptimizer([p], SolverConfig(iter_size=2, clip_gradients=5.0))
    p.grad = torch.tensor([6.0, 8.0], dtype=torch.float64)
    opt.step(1.0)
    assert p.detach().tolist() == [-1.5, -2.0]


def test_lr_drop_keeps_the_old_rate_in_the_history() -> None:
    cfg = SolverConfig(momentum=0.9)
    lrs = [0.1] * 4 + [0.01] * 4
    ref, params, opt = run_both(cfg, lrs)
    assert_matches(ref, params)

    # torch.optim.SGD keeps an lr-free velocity and multiplies it by the current lr.
    prob = Problem(0, len(lrs), 1)
    tparams = prob.torch_params()
    tgroups = [{"params": [tparams[i] for i in idx], "lr": 0.0} for idx in GROUPS]
    topt = torch.optim.SGD(tgroups, lr=0.0, momentum=0.9)
    caffe_before_drop = _replay(cfg, lrs[:4])
    for s, lr in enumerate(lrs):
        for g, (lm, _) in zip(topt.param_groups, GROUP_MULTS, strict=True):
            g["lr"] = lr * lm
        topt.zero_grad()
        prob.backward(tparams, s)
        topt.step()
        if s == 3:  # before the drop both rules are the same (v_caffe = lr * v_torch)
            for a, b in zip(tparams, caffe_before_drop, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # after the drop they part: Caffe still moves by 0.9 * (the velocity at lr 0.1)
    assert not torch.allclose(tparams[0], params[0], rtol=1e-6, atol=1e-8)


def test_first_update_after_a_drop_is_momentum_times_old_history_plus_new_rate() -> None:
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = CaffeOptimizer([p], SolverConfig(momentum=0.9))
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    p.grad = g.clone()
    opt.step(0.1)  # v = 0.1 g, w = -0.1 g
    p.grad = g.clone()
    before = p.detach().clone()
    opt.step(0.001)  # v = 0.9 * 0.1 g + 0.001 g = 0.091 g
    torch.testing.assert_close(before - p.detach(), 0.091 * g, rtol=1e-14, atol=0.0)
    # torch's SGD would have moved by 0.001 * (0.9 g + g) = 0.0019 g


def _replay(cfg: SolverConfig, lrs: list[float]) -> list[torch.nn.Parameter]:
    _, params, _ = run_both(cfg, lrs)
    return params


def test_none_grads_are_skipped() -> None:
    a = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = CaffeOptimizer([{"params": [a, b]}], SolverConfig(momentum=0.9, weight_decay=0.1))
    a.grad = torch.ones(2, dtype=torch.float64)
    opt.step(0.1)
    assert torch.equal(b.detach(), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(a.detach(), torch.full((2,), 1 - 0.1 * 1.1, dtype=torch.float64))
    assert opt.state_tensors()["history.0.1.history"].abs().sum() == 0


def test_lr_mult_zero_freezes_a_blob() -> None:
    a = torch.nn.Parameter(torch.ones(2))
    opt = CaffeOptimizer(
        [{"params": [a], "lr_mult": 0.0}],
        SolverConfig(type=SolverType.Adam, momentum=0.9, weight_decay=0.1),
    )
    for _ in range(3):
        a.grad = torch.randn(2)
        opt.step(0.1)
    assert torch.equal(a.detach(), torch.ones(2))


def test_default_group_multipliers() -> None:
    a = torch.nn.Parameter(torch.ones(1))
    opt = CaffeOptimizer([a], SolverConfig())
    assert opt.param_groups[0]["lr_mult"] == 1.0
    assert opt.param_groups[0]["decay_mult"] == 1.0


def test_float32_params_stay_float32() -> None:
    a = torch.nn.Parameter(torch.ones(4, dtype=torch.float32))
    opt = CaffeOptimizer([a], SolverConfig(type=SolverType.Adam, momentum=0.9, clip_gradients=0.1))
    a.grad = torch.ones(4)
    opt.step(0.01)
    assert a.dtype == torch.float32
    assert all(t.dtype == torch.float32 for k, t in opt.state_tensors().items() if k != "iter")


# --------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("stype", list(SolverType), ids=lambda t: t.value)
def test_state_tensors_resume_bit_identical(stype: SolverType, tmp_path) -> None:
    cfg = SolverConfig(
        type=stype, **TYPE_SETTINGS[stype], weight_decay=0.01, iter_size=2, clip_gradients=2.0
    )
    lrs = [0.05, 0.04, 0.03, 0.02, 0.01, 0.01]
    prob = Problem(3, len(lrs), cfg.iter_size)

    straight = prob.torch_params()
    opt = make_optimizer(straight, cfg)
    for s, lr in enumerate(lrs):
        opt.zero_grad()
        prob.backward(straight, s)
        opt.step(lr)

    first = prob.torch_params()
    opt1 = make_optimizer(first, cfg)
    for s, lr in enumerate(lrs[:3]):
        opt1.zero_grad()
        prob.backward(first, s)
        opt1.step(lr)
    path = tmp_path / "solverstate.safetensors"
    state = opt1.state_tensors()
    save_file(state, str(path))
    weights = [p.detach().clone() for p in first]
    # further steps on the first optimizer must not leak into the snapshot
    opt1.step(1.0)
    assert all(torch.equal(state[k], v) for k, v in load_file(str(path)).items())

    resumed = [torch.nn.Parameter(w) for w in weights]
    opt2 = make_optimizer(resumed, cfg)
    opt2.load_state_tensors(load_file(str(path)))
    assert opt2.iteration == 3
    for s, lr in enumerate(lrs[3:], start=3):
        opt2.zero_grad()
        prob.backward(resumed, s)
        opt2.step(lr)
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)


def test_state_tensor_keys() -> None:
    params = Problem(0, 1, 1).torch_params()
    opt = make_optimizer(params, SolverConfig(type=SolverType.Adam, momentum=0.9))
    keys = set(opt.state_tensors())
    assert keys == {
        "iter",
        "history.0.0.m",
        "history.0.0.v",
        "history.0.1.m",
        "history.0.1.v",
        "history.1.0.m",
        "history.1.0.v",
    }
    assert opt.state_tensors()["iter"].dtype == torch.int64


def test_load_state_tensors_rejects_another_solver_type() -> None:
    params = Problem(0, 1, 1).torch_params()
    sgd = make_optimizer(params, SolverConfig(momentum=0.9))
    adam = make_optimizer(params, SolverConfig(type=SolverType.Adam, momentum=0.9))
    with pytest.raises(DataError, match="missing") as e:
        adam.load_state_tensors(sgd.state_tensors())
    assert e.value.hint is not None and "Adam" in e.value.hint


def test_load_state_tensors_rejects_wrong_shapes_and_changes_nothing() -> None:
    params = Problem(0, 1, 1).torch_params()
    opt = make_optimizer(params, SolverConfig(momentum=0.9))
    state = opt.state_tensors()
    state["history.0.0.history"] = torch.ones(4, 3, dtype=torch.float64)
    state["history.0.1.history"] = torch.ones(4, dtype=torch.float64)
    state["iter"] = torch.tensor(7)
    with pytest.raises(DataError, match=r"history\.0\.0\.history.*\(4, 3\).*\(3, 4\)"):
        opt.load_state_tensors(state)
    assert opt.iteration == 0
    assert opt.state_tensors()["history.0.1.history"].abs().sum() == 0

    extra = opt.state_tensors()
    extra["history.2.0.history"] = torch.zeros(1)
    with pytest.raises(DataError, match="unexpected"):
        opt.load_state_tensors(extra)
    bad_iter = opt.state_tensors()
    bad_iter["iter"] = torch.tensor(1.5)
    with pytest.raises(DataError, match="iter"):
        opt.load_state_tensors(bad_iter)


def test_torch_state_dict_keeps_the_iteration() -> None:
    params = Problem(0, 1, 1).torch_params()
    cfg = SolverConfig(type=SolverType.Adam, momentum=0.9)
    opt = make_optimizer(params, cfg)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step(0.1)
    opt2 = make_optimizer(params, cfg)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.iteration == 1


# --------------------------------------------------------------------------- config

ALLOWED = (int, float, bool, str, tuple[int, ...])


def test_every_field_has_a_doc_and_a_supported_type() -> None:
    hints = typing.get_type_hints(SolverConfig)
    for f in dataclasses.fields(SolverConfig):
        assert isinstance(f.metadata.get("doc"), str) and f.metadata["doc"], f.name
        assert "\n" not in f.metadata["doc"]
        t = hints[f.name]
        assert t == f.type, f.name  # real types, not strings, for the generic converter
        assert t in ALLOWED or (isinstance(t, type) and issubclass(t, enum.Enum)), f.name
        assert f.default is not dataclasses.MISSING, f.name
    assert set(SolverConfig.field_docs()) == {f.name for f in dataclasses.fields(SolverConfig)}


def test_caffe_defaults() -> None:
    c = SolverConfig()
    assert c.type is SolverType.SGD
    assert (c.momentum2, c.delta, c.rms_decay) == (0.999, 1e-8, 0.99)
    assert (c.iter_size, c.clip_gradients, c.regularization_type) == (1, -1.0, "L2")
    assert (c.test_initialization, c.average_loss, c.random_seed) == (True, 1, -1)
    assert (c.max_drops, c.plateau_mode, c.warmup_iter) == (3, "max", 0)
    c.validate()


def test_solver_type_parse() -> None:
    assert SolverType.parse("NESTEROV") is SolverType.Nesterov
    assert SolverType.parse("adam") is SolverType.Adam
    assert SolverType.parse("RMSProp") is SolverType.RMSProp
    assert SolverType.parse(SolverType.SGD) is SolverType.SGD
    with pytest.raises(SpecError) as e:
        SolverType.parse("Adma")
    assert e.value.hint is not None and "Adam" in e.value.hint


def test_coercions() -> None:
    c = SolverConfig(type="ADAGRAD", stepvalue=[10, 20], test_iter=[100, 50])
    assert c.type is SolverType.AdaGrad
    assert c.stepvalue == (10, 20)
    assert c.test_iter == 100
    assert SolverConfig(solver_type="ADAM").type is SolverType.Adam


def test_resolve_max_iter() -> None:
    c = SolverConfig(lr_policy="poly", power=1.0, max_epochs=2.5)
    c.validate()
    r = resolve_max_iter(c, iters_per_epoch=1000 / 3)
    assert (r.max_iter, r.max_epochs) == (834, 0.0)
    r.validate()
    assert resolve_max_iter(SolverConfig(max_iter=7), 10.0).max_iter == 7


BAD: dict[str, tuple[dict[str, object], str]] = {
    "negative base_lr": ({"base_lr": -0.1}, "base_lr"),
    "step without stepsize": ({"lr_policy": "step", "gamma": 0.1}, "stepsize"),
    "step without gamma": ({"lr_policy": "step", "stepsize": 10}, "gamma"),
    "sigmoid without stepsize": ({"lr_policy": "sigmoid", "gamma": 0.1}, "stepsize"),
    "multistep without stepvalue": ({"lr_policy": "multistep", "gamma": 0.1}, "stepvalue"),
    "multistep unsorted": (
        {"lr_policy": "multistep", "gamma": 0.1, "stepvalue": (20, 10)},
        "stepvalue",
    ),
    "poly without max_iter": ({"lr_policy": "poly", "power": 1.0}, "max_iter"),
    "unknown policy": ({"lr_policy": "cosine"}, "lr_policy"),
    "plateau patience 0": (
        {"lr_policy": "plateau", "gamma": 0.1, "patience": 0, "test_interval": 10, "test_iter": 1},
        "patience",
    ),
    "plateau bad mode": (
        {
            "lr_policy": "plateau",
            "gamma": 0.1,
            "plateau_mode": "up",
            "test_interval": 10,
            "test_iter": 1,
        },
        "plateau_mode",
    ),
    "plateau without tests": ({"lr_policy": "plateau", "gamma": 0.1}, "test_interval"),
    "iter_size 0": ({"iter_size": 0}, "iter_size"),
    "inv negative gamma": ({"lr_policy": "inv", "gamma": -1.0, "power": 0.75}, "gamma"),
    "step negative gamma": ({"lr_policy": "step", "gamma": -0.5, "stepsize": 10}, "gamma"),
    "multistep negative gamma": (
        {"lr_policy": "multistep", "gamma": -0.5, "stepvalue": (10, 20)},
        "gamma",
    ),
    "exp negative gamma": ({"lr_policy": "exp", "gamma": -0.5}, "gamma"),
    "plateau negative gamma": (
        {"lr_policy": "plateau", "gamma": -0.5, "test_interval": 10, "test_iter": 1},
        "gamma",
    ),
    "exp without gamma": ({"lr_policy": "exp"}, "gamma"),
    "sigmoid stepsize 0 with negative gamma": (
        {"lr_policy": "sigmoid", "gamma": -0.5},
        "stepsize",
    ),
    "poly without max_iter, power 0": ({"lr_policy": "poly"}, "max_iter"),
    "poly negative power": ({"lr_policy": "poly", "power": -1.0, "max_iter": 10}, "power"),
    "nan base_lr": ({"base_lr": math.nan}, "base_lr"),
    "inf base_lr": ({"base_lr": math.inf}, "base_lr"),
    "nan gamma under sigmoid": (
        {"lr_policy": "sigmoid", "gamma": math.nan, "stepsize": 10},
        "gamma",
    ),
    "-inf gamma under sigmoid": (
        {"lr_policy": "sigmoid", "gamma": -math.inf, "stepsize": 10},
        "gamma",
    ),
    "nan gamma under step": ({"lr_policy": "step", "gamma": math.nan, "stepsize": 10}, "gamma"),
    "inf power": ({"lr_policy": "inv", "gamma": 0.1, "power": math.inf}, "power"),
    "nan momentum": ({"momentum": math.nan}, "momentum"),
    "nan momentum under AdaGrad": ({"type": SolverType.AdaGrad, "momentum": math.nan}, "momentum"),
    "nan momentum2": ({"type": SolverType.Adam, "momentum2": math.nan}, "momentum2"),
    "inf delta": ({"delta": math.inf}, "delta"),
    "nan rms_decay": ({"type": SolverType.RMSProp, "rms_decay": math.nan}, "rms_decay"),
    "nan weight_decay": ({"weight_decay": math.nan}, "weight_decay"),
    "negative weight_decay": ({"weight_decay": -0.1}, "weight_decay"),
    "-inf clip_gradients": ({"clip_gradients": -math.inf}, "clip_gradients"),
    "nan warmup_start_factor": (
        {"warmup_iter": 10, "warmup_start_factor": math.nan},
        "warmup_start_factor",
    ),
    "inf max_epochs": ({"max_epochs": math.inf}, "max_epochs"),
    "regularization": ({"regularization_type": "L3"}, "regularization_type"),
    "momentum 1": ({"momentum": 1.0}, "momentum"),
    "adagrad momentum": ({"type": SolverType.AdaGrad, "momentum": 0.9}, "momentum"),
    "rmsprop momentum": ({"type": SolverType.RMSProp, "momentum": 0.9}, "momentum"),
    "rmsprop decay": ({"type": SolverType.RMSProp, "rms_decay": 1.0}, "rms_decay"),
    "adam beta2": ({"type": SolverType.Adam, "momentum2": 1.0}, "momentum2"),
    "both max_iter and max_epochs": ({"max_iter": 10, "max_epochs": 1.0}, "max_epochs"),
    "test_interval without test_iter": ({"test_interval": 100}, "test_iter"),
    "warmup factor": ({"warmup_iter": 10, "warmup_start_factor": 2.0}, "warmup_start_factor"),
    "solver_type contradicts type": (
        {"type": SolverType.Adam, "solver_type": "NESTEROV"},
        "solver_type",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_validate_rejects(case: str) -> None:
    kwargs, field_name = BAD[case]
    cfg = SolverConfig(**kwargs)
    span = Span("solver.prototxt", 3, 1)
    with pytest.raises(SpecError) as e:
        cfg.validate(spans={field_name: span})
    assert e.value.span == span, e.value.message


def test_validate_points_at_the_field_that_made_a_default_wrong() -> None:
    policy_span = Span("solver.prototxt", 2, 1)
    cfg = SolverConfig(lr_policy="step", gamma=0.1)  # stepsize left at 0
    with pytest.raises(SpecError, match="stepsize") as e:
        cfg.validate(spans={"lr_policy": policy_span, "gamma": Span("solver.prototxt", 3, 1)})
    assert e.value.span == policy_span


def test_validate_collects_several_errors() -> None:
    cfg = SolverConfig(base_lr=-1.0, iter_size=0)
    with pytest.raises(ErrorList) as e:
        cfg.validate()
    assert len(e.value.errors) == 2
    assert all(isinstance(x, SpecError) for x in e.value.errors)


def test_validate_accepts_reasonable_configs() -> None:
    SolverConfig(
        base_lr=0.01,
        lr_policy="step",
        gamma=0.1,
        stepsize=100000,
        momentum=0.9,
        weight_decay=0.0005,
        max_iter=450000,
        test_interval=1000,
        test_iter=1000,
    ).validate()
    SolverConfig(
        lr_policy="plateau", gamma=0.1, patience=3, test_interval=500, test_iter=100, max_iter=10000
    ).validate()
    SolverConfig(
        type=SolverType.Adam, momentum=0.9, lr_policy="multistep", gamma=0.5, stepvalue=(100, 200)
    ).validate()
    # sigmoid takes any finite gamma: < 0 decays (Caffe's "sigmoid decay"), > 0 rises
    for gamma in (-0.5, -1e-4, 0.0, 0.01):
        SolverConfig(lr_policy="sigmoid", gamma=gamma, stepsize=100).validate()
    # gamma is unused by fixed and poly, so its sign does not matter there
    SolverConfig(lr_policy="fixed", gamma=-0.5).validate()
    SolverConfig(lr_policy="poly", gamma=-0.5, power=1.0, max_iter=100).validate()
    SolverConfig(lr_policy="inv", gamma=0.0, power=0.75).validate()
    SolverConfig(clip_gradients=-1.0, max_epochs=2.5).validate()


@pytest.mark.parametrize(
    ("policy", "extra", "every"),
    [
        ("step", {"stepsize": 10}, "step"),
        ("multistep", {"stepvalue": (10,)}, "stepvalue"),
        ("exp", {}, "iteration"),
        ("plateau", {"test_interval": 10, "test_iter": 1}, "drop"),
    ],
)
def test_negative_gamma_message_says_why(policy: str, extra: dict, every: str) -> None:
    with pytest.raises(SpecError) as e:
        SolverConfig(lr_policy=policy, gamma=-0.5, **extra).validate()
    msg = e.value.message
    assert f"lr_policy '{policy}' needs gamma >= 0, got -0.5" in msg
    assert f"negative at every other {every}" in msg
    assert e.value.hint is not None and "gamma: 0." in e.value.hint


def test_inv_negative_gamma_says_where_the_rate_breaks_down() -> None:
    with pytest.raises(SpecError) as e:
        SolverConfig(lr_policy="inv", gamma=-0.001, power=0.75).validate()
    assert "1 + gamma * iter <= 0 (from iteration 1000 on)" in e.value.message
    with pytest.raises(SpecError, match="more iterations than any run has"):
        SolverConfig(lr_policy="inv", gamma=-5e-324, power=0.75).validate()


def test_non_finite_float_is_one_error_per_field() -> None:
    # NaN fails every range comparison; it is reported once, as not finite.
    with pytest.raises(SpecError) as e0:
        SolverConfig(type=SolverType.RMSProp, momentum=math.nan).validate()
    assert e0.value.message == "momentum must be a finite number, got nan"
    with pytest.raises(ErrorList) as e:
        SolverConfig(base_lr=math.nan, gamma=math.inf, lr_policy="step", stepsize=10).validate()
    assert [x.message for x in e.value.errors] == [
        "base_lr must be a finite number, got nan",
        "gamma must be a finite number, got inf",
    ]
    with pytest.raises(SpecError) as e1:
        SolverConfig(clip_gradients=math.nan).validate()
    assert e1.value.hint is not None and "turns clipping off" in e1.value.hint


def test_every_float_field_is_checked_for_nan() -> None:
    hints = typing.get_type_hints(SolverConfig)
    floats = [f.name for f in dataclasses.fields(SolverConfig) if hints[f.name] is float]
    assert len(floats) == 11
    for name in floats:
        with pytest.raises(SpecError) as e:
            SolverConfig(**{name: math.nan}).validate()
        assert e.value.message == f"{name} must be a finite number, got nan"


def test_random_seed_must_fit_in_64_bits() -> None:
    SolverConfig(random_seed=2**63 - 1).validate()
    SolverConfig(random_seed=-7).validate()  # negative: unseeded, as in Caffe
    with pytest.raises(SpecError, match="random_seed must fit in 64 bits"):
        SolverConfig(random_seed=10**23).validate()


# --------------------------------------------------------------------------- from spec text

SOLVER_SPEC = """solver {
  base_lr: 0.01
  lr_policy: "step"
  gamma: 0.1
  stepsize: 100
  max_iter: 1000
}
"""


def _solver_from_text(tmp_path: Path, text: str, overrides: dict[str, str] | None = None):
    path = tmp_path / "solver.net"
    path.write_text(text)
    return netdsl.load(path, "train", overrides or {}).solver, path


def test_set_sigmoid_with_negative_gamma_is_accepted(tmp_path: Path) -> None:
    # issue 9: --set solver.lr_policy=sigmoid --set solver.gamma=-0.5
    cfg, _ = _solver_from_text(
        tmp_path, SOLVER_SPEC, {"solver.lr_policy": "sigmoid", "solver.gamma": "-0.5"}
    )
    assert (cfg.lr_policy, cfg.gamma, cfg.stepsize) == ("sigmoid", -0.5, 100)
    assert learning_rate(cfg, 100) == pytest.approx(0.005, rel=1e-12)
    assert learning_rate(cfg, 110) == pytest.approx(0.01 / (1 + math.exp(5)), rel=1e-12)


@pytest.mark.parametrize("policy", ["step", "exp", "inv"])
def test_set_negative_gamma_is_located_at_the_override(tmp_path: Path, policy: str) -> None:
    with pytest.raises(SpecError) as e:
        _solver_from_text(
            tmp_path,
            SOLVER_SPEC,
            {"solver.lr_policy": policy, "solver.gamma": "-0.5"},
        )
    assert f"lr_policy '{policy}' needs gamma >= 0, got -0.5" in e.value.message
    # the value of "solver.gamma=-0.5" starts at column 13 + 1
    assert (e.value.span.path, e.value.span.line, e.value.span.col) == (
        "<--set solver.gamma>",
        1,
        len("solver.gamma=") + 1,
    )


@pytest.mark.parametrize(
    ("old", "new", "field_name"),
    [
        ('lr_policy: "step"', 'lr_policy: "exp"', "gamma"),  # gamma: 0.1 -> -0.5 below
        ("base_lr: 0.01", "base_lr: nan", "base_lr"),
        ("max_iter: 1000", "momentum: inf", "momentum"),
    ],
)
def test_spec_refusal_points_at_the_field(
    tmp_path: Path, old: str, new: str, field_name: str
) -> None:
    text = SOLVER_SPEC.replace(old, new)
    if field_name == "gamma":
        text = text.replace("gamma: 0.1", "gamma: -0.5")
    with pytest.raises(SpecError) as e:
        _solver_from_text(tmp_path, text)
    lines = text.splitlines()
    want_line = next(i for i, t in enumerate(lines, 1) if t.startswith(f"  {field_name}:"))
    span = e.value.span
    assert (Path(span.path).name, span.line, span.col) == ("solver.net", want_line, 3)
    assert e.value.message.startswith(
        "lr_policy 'exp' needs gamma >= 0" if field_name == "gamma" else f"{field_name} must be"
    )


def test_an_unknown_policy_is_quoted_short() -> None:
    """A 10,000-character lr_policy is named by its head, not printed whole (fuzzing)."""
    from netdsl.diagnostics import NetdslError, render

    with pytest.raises(NetdslError) as e:
        SolverConfig(base_lr=0.1, lr_policy="a" * 10_000).validate()
    text = render(e.value)
    assert "unknown lr_policy 'aaa" in text and "(10,000 characters)" in text and len(text) < 400
