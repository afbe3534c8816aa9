"""Learning-rate policies against numbers worked out from Caffe's formulas (sgd_solver.cpp)."""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from netdsl.diagnostics import DataError, SpecError
from netdsl.runtime import lr_policy as lp
from netdsl.runtime.lr_policy import PlateauState, learning_rate, plateau_update
from netdsl.sections import LR_POLICIES, SolverConfig

approx = pytest.approx


def cfg(**kw: object) -> SolverConfig:
    return SolverConfig(**kw)


def test_fixed() -> None:
    c = cfg(base_lr=0.01, lr_policy="fixed")
    for it in (0, 1, 12345, 10**7):
        assert learning_rate(c, it) == 0.01


def test_step() -> None:
    # base_lr * gamma ^ floor(iter / stepsize), the ImageNet reference schedule.
    c = cfg(base_lr=0.01, lr_policy="step", gamma=0.1, stepsize=100000)
    assert learning_rate(c, 0) == approx(0.01, rel=1e-12)
    assert learning_rate(c, 99999) == approx(0.01, rel=1e-12)
    assert learning_rate(c, 100000) == approx(0.001, rel=1e-12)
    assert learning_rate(c, 199999) == approx(0.001, rel=1e-12)
    assert learning_rate(c, 250000) == approx(0.0001, rel=1e-12)
    assert lp.step(c, 250000) == learning_rate(c, 250000)


def test_exp() -> None:
    # base_lr * gamma ^ iter
    c = cfg(base_lr=0.01, lr_policy="exp", gamma=0.999)
    assert learning_rate(c, 0) == approx(0.01, rel=1e-12)
    assert learning_rate(c, 1) == approx(0.00999, rel=1e-12)
    assert learning_rate(c, 1000) == approx(0.01 * 0.999**1000, rel=1e-12)
    assert learning_rate(c, 1000) == approx(0.003676954247709635, rel=1e-9)


def test_inv() -> None:
    # base_lr * (1 + gamma * iter) ^ (-power): the LeNet example (gamma 1e-4, power 0.75).
    c = cfg(base_lr=0.01, lr_policy="inv", gamma=0.0001, power=0.75)
    assert learning_rate(c, 0) == approx(0.01, rel=1e-12)
    assert learning_rate(c, 100) == approx(0.01 * 1.01**-0.75, rel=1e-12)
    # 1 + 1e-4 * 10000 = 2, and 2^-0.75 = 0.5946035575013605
    assert learning_rate(c, 10000) == approx(0.005946035575013605, rel=1e-12)


def test_multistep() -> None:
    # gamma ^ (number of stepvalues reached), reached meaning iter >= stepvalue[k]
    c = cfg(base_lr=0.1, lr_policy="multistep", gamma=0.5, stepvalue=(100, 200, 400))
    expected = {
        0: 0.1,
        99: 0.1,
        100: 0.05,
        199: 0.05,
        200: 0.025,
        399: 0.025,
        400: 0.0125,
        10**6: 0.0125,
    }
    for it, lr in expected.items():
        assert learning_rate(c, it) == approx(lr, rel=1e-12), it


def test_multistep_matches_caffe_incremental_counter() -> None:
    # Caffe keeps current_step_ and advances it at most once per call; visiting every
    # iteration in order gives the same rate as the stateless count.
    c = cfg(base_lr=1.0, lr_policy="multistep", gamma=0.1, stepvalue=(3, 4, 9))
    current_step = 0
    for it in range(15):
        if current_step < len(c.stepvalue) and it >= c.stepvalue[current_step]:
            current_step += 1
        assert learning_rate(c, it) == approx(0.1**current_step, rel=1e-12)


def test_poly() -> None:
    # base_lr * (1 - iter / max_iter) ^ power
    c = cfg(base_lr=0.01, lr_policy="poly", power=2.0, max_iter=1000)
    assert learning_rate(c, 0) == approx(0.01, rel=1e-12)
    assert learning_rate(c, 500) == approx(0.0025, rel=1e-12)
    assert learning_rate(c, 900) == approx(0.0001, rel=1e-9)
    assert learning_rate(c, 1000) == 0.0
    assert learning_rate(c, 1200) == 0.0  # Caffe: NaN; the loop stops at max_iter anyway
    c = cfg(base_lr=0.01, lr_policy="poly", power=0.9, max_iter=1000)
    assert learning_rate(c, 250) == approx(0.01 * 0.75**0.9, rel=1e-12)
    assert learning_rate(c, 250) == approx(0.0077188950672357, rel=1e-9)


def test_poly_without_max_iter() -> None:
    with pytest.raises(SpecError, match="max_iter"):
        learning_rate(cfg(lr_policy="poly", power=1.0), 10)


def test_sigmoid() -> None:
    # base_lr * 1 / (1 + exp(-gamma * (iter - stepsize)))
    c = cfg(base_lr=0.01, lr_policy="sigmoid", gamma=0.01, stepsize=1000)
    assert learning_rate(c, 1000) == approx(0.005, rel=1e-12)
    assert learning_rate(c, 0) == approx(0.01 / (1 + math.exp(10)), rel=1e-12)
    assert learning_rate(c, 0) == approx(4.5397868702434395e-07, rel=1e-9)
    assert learning_rate(c, 2000) == approx(0.01 / (1 + math.exp(-10)), rel=1e-12)
    # exp overflows in double: Caffe's float gives inf, so the rate is 0
    c = cfg(base_lr=0.01, lr_policy="sigmoid", gamma=1.0, stepsize=10**6)
    assert learning_rate(c, 0) == 0.0


def test_sigmoid_negative_gamma_decays() -> None:
    # Caffe's "sigmoid decay": gamma < 0 gives base_lr / (1 + exp(0.5 * (iter - 100))),
    # near base_lr well before stepsize, base_lr / 2 at it, near 0 well after.
    c = cfg(base_lr=0.01, lr_policy="sigmoid", gamma=-0.5, stepsize=100)
    c.validate()
    assert learning_rate(c, 100) == approx(0.005, rel=1e-12)
    assert learning_rate(c, 0) == approx(0.01 / (1 + math.exp(-50)), rel=1e-12)
    assert learning_rate(c, 90) == approx(0.01 / (1 + math.exp(-5)), rel=1e-12)
    assert learning_rate(c, 110) == approx(0.01 / (1 + math.exp(5)), rel=1e-12)
    assert learning_rate(c, 110) == approx(6.692850924284856e-05, rel=1e-9)
    assert learning_rate(c, 200) == approx(0.01 / (1 + math.exp(50)), rel=1e-12)
    lrs = [learning_rate(c, it) for it in range(0, 301, 10)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[0] > 0.0099 and lrs[-1] < 1e-40
    # far past the midpoint exp overflows in double (Caffe's float: inf), so the rate is 0
    assert learning_rate(c, 10**6) == 0.0
    # the mirror image of the rising sigmoid: the two rates add up to base_lr
    rising = cfg(base_lr=0.01, lr_policy="sigmoid", gamma=0.5, stepsize=100)
    for it in (0, 50, 99, 100, 101, 150, 300):
        assert learning_rate(c, it) + learning_rate(rising, it) == approx(0.01, rel=1e-12)


def test_sigmoid_zero_gamma_is_half_the_rate() -> None:
    c = cfg(base_lr=0.01, lr_policy="sigmoid", gamma=0.0, stepsize=100)
    c.validate()
    assert [learning_rate(c, it) for it in (0, 100, 10**6)] == [0.005] * 3


def test_inv_refuses_a_non_positive_base_instead_of_a_math_error() -> None:
    # validate() refuses gamma < 0 for inv; called anyway, the rate is a SpecError, not
    # math.pow's ValueError, once 1 + gamma * iter <= 0 (iteration 4 for gamma -0.25).
    c = cfg(base_lr=0.01, lr_policy="inv", gamma=-0.25, power=0.75)
    assert learning_rate(c, 3) == approx(0.01 * 0.25**-0.75, rel=1e-12)
    with pytest.raises(SpecError, match="iteration 4") as e:
        learning_rate(c, 4)
    assert e.value.hint is not None and "gamma >= 0" in e.value.hint


def test_unknown_policy() -> None:
    with pytest.raises(SpecError) as e:
        learning_rate(cfg(lr_policy="stpe"), 0)
    assert e.value.hint is not None and "step" in e.value.hint


def test_dispatch_covers_every_policy() -> None:
    assert tuple(lp.POLICIES) == LR_POLICIES  # the section's names, each computed here
    assert set(lp.POLICIES) == {
        "fixed",
        "step",
        "multistep",
        "exp",
        "inv",
        "poly",
        "sigmoid",
        "plateau",
    }


# --------------------------------------------------------------------------- warmup


def test_warmup_ramp_on_fixed() -> None:
    c = cfg(base_lr=0.01, lr_policy="fixed", warmup_iter=100, warmup_start_factor=0.1)
    assert learning_rate(c, 0) == approx(0.001, rel=1e-12)
    assert learning_rate(c, 50) == approx(0.01 * (0.1 + 0.9 * 0.5), rel=1e-12)  # 0.0055
    assert learning_rate(c, 99) == approx(0.01 * (0.1 + 0.9 * 0.99), rel=1e-12)
    assert learning_rate(c, 100) == 0.01
    assert learning_rate(c, 5000) == 0.01
    lrs = [learning_rate(c, it) for it in range(101)]
    assert all(a < b for a, b in zip(lrs[:100], lrs[1:], strict=True))


def test_warmup_multiplies_the_scheduled_rate() -> None:
    c = cfg(
        base_lr=0.1,
        lr_policy="step",
        gamma=0.1,
        stepsize=10,
        warmup_iter=20,
        warmup_start_factor=0.0,
    )
    assert learning_rate(c, 0) == 0.0
    assert learning_rate(c, 5) == approx(0.1 * 0.25, rel=1e-12)
    assert learning_rate(c, 15) == approx(0.01 * 0.75, rel=1e-12)
    assert learning_rate(c, 20) == approx(0.001, rel=1e-12)


def test_no_warmup_by_default() -> None:
    assert lp.warmup_factor(cfg(), 0) == 1.0


# --------------------------------------------------------------------------- plateau


def plateau_cfg(**kw: object) -> SolverConfig:
    base: dict[str, object] = dict(
        base_lr=0.01,
        lr_policy="plateau",
        gamma=0.1,
        patience=2,
        max_drops=3,
        test_interval=100,
        test_iter=10,
    )
    base.update(kw)
    return cfg(**base)


def run_plateau(c: SolverConfig, metrics: list[float]) -> list[PlateauState]:
    states = []
    s = PlateauState.initial(c)
    for m in metrics:
        s = plateau_update(c, s, m)
        states.append(s)
    return states


def test_plateau_drops_after_patience_bad_tests() -> None:
    c = plateau_cfg()
    assert learning_rate(c, 0, None) == 0.01
    metrics = [0.5, 0.6, 0.6, 0.55, 0.7, 0.69]
    drops = [s.drops for s in run_plateau(c, metrics)]
    # 0.5 and 0.6 improve; 0.6 (not strictly better) and 0.55 are two bad tests -> drop;
    # 0.7 improves; 0.69 is one bad test, not enough.
    assert drops == [0, 0, 0, 1, 1, 1]
    states = run_plateau(c, metrics)
    assert states[-1] == PlateauState(best=0.7, bad_tests=1, drops=1)
    assert learning_rate(c, 12345, states[-1]) == approx(0.001, rel=1e-12)


def test_plateau_counter_restarts_after_a_drop_and_stops_at_max_drops() -> None:
    c = plateau_cfg(patience=2, max_drops=3)
    states = run_plateau(c, [0.9] + [0.1] * 10)
    assert [s.drops for s in states] == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3]
    assert states[-1].best == 0.9
    assert learning_rate(c, 0, states[-1]) == approx(0.01 * 0.1**3, rel=1e-12)
    assert not lp.plateau_exhausted(c, states[5])
    assert lp.plateau_exhausted(c, states[8])
    assert not lp.plateau_exhausted(c, None)


def test_plateau_min_mode_and_nan() -> None:
    c = plateau_cfg(plateau_metric="loss", plateau_mode="min", patience=1, max_drops=1)
    s = PlateauState.initial(c)
    assert s.best == math.inf
    s = plateau_update(c, s, 2.0)
    s = plateau_update(c, s, 1.5)
    assert (s.best, s.drops) == (1.5, 0)
    s = plateau_update(c, s, float("nan"))  # a NaN test never counts as progress
    assert (s.best, s.drops) == (1.5, 1)


def test_plateau_update_accepts_none_and_is_pure() -> None:
    c = plateau_cfg()
    s0 = PlateauState.initial(c)
    s1 = plateau_update(c, None, 0.3)
    assert s1 == PlateauState(best=0.3, bad_tests=0, drops=0)
    assert s0 == PlateauState.initial(c)
    with pytest.raises(AttributeError):
        s1.drops = 2


def test_plateau_state_tensors_round_trip(tmp_path) -> None:
    for s in (PlateauState(), PlateauState(best=0.8125, bad_tests=2, drops=1)):
        path = tmp_path / "p.safetensors"
        save_file(s.as_tensors(), str(path))
        assert PlateauState.from_tensors(load_file(str(path))) == s
    with pytest.raises(DataError):
        PlateauState.from_tensors({"plateau.best": torch.tensor(0.0)})
