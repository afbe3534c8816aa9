"""Caffe's learning-rate policies as pure functions of ``(cfg, it)``.

Each policy reproduces ``SGDSolver::GetLearningRate`` (caffe/src/caffe/solvers/sgd_solver.cpp)
for the iteration ``it`` (Caffe's ``iter_``, counted from 0, before the update of that
iteration is applied):

=========  =====================================================  ===========================
policy     rate                                                   ranges (``validate``)
=========  =====================================================  ===========================
fixed      ``base_lr``
step       ``base_lr * gamma ** floor(it / stepsize)``            gamma > 0, stepsize > 0
exp        ``base_lr * gamma ** it``                              gamma > 0
inv        ``base_lr * (1 + gamma * it) ** (-power)``             gamma >= 0
multistep  ``base_lr * gamma ** (number of stepvalue[k] <= it)``  gamma > 0, stepvalue rising
poly       ``base_lr * (1 - it / max_iter) ** power``             max_iter > 0, power >= 0
sigmoid    ``base_lr / (1 + exp(-gamma * (it - stepsize)))``      any gamma, stepsize > 0
plateau    ``base_lr * gamma ** drops`` (netdsl's)                gamma > 0
=========  =====================================================  ===========================

A negative gamma would flip the sign of the rate at every other drop (step, multistep, exp,
plateau) or make ``1 + gamma * it`` negative (inv), so :meth:`SolverConfig.validate` refuses
it there. For sigmoid the sign of gamma picks the shape: ``gamma < 0`` decays from ``base_lr``
to 0 around ``stepsize`` (the "sigmoid decay" of Caffe's docs), ``gamma > 0`` rises from 0 to
``base_lr``. Caffe 1.0 accepts either; BVLC master since late 2017 checks ``gamma >= 0`` for
sigmoid too, which leaves only the rising shape.

Caffe's own ``plateau`` (in some forks) watches the smoothed training loss; netdsl's follows
the paper instead: the rate is divided (multiplied by ``gamma``) when a *validation* metric
has stopped improving for ``patience`` consecutive tests, at most ``max_drops`` times.

On top of any policy, ``warmup_iter > 0`` scales the rate linearly from
``warmup_start_factor`` to 1 over the first ``warmup_iter`` iterations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from netdsl.diagnostics import DataError, SpecError, did_you_mean

if TYPE_CHECKING:
    from netdsl.sections import SolverConfig

__all__ = [
    "POLICIES",
    "PlateauState",
    "exp",
    "fixed",
    "inv",
    "learning_rate",
    "multistep",
    "plateau",
    "plateau_exhausted",
    "plateau_update",
    "poly",
    "sigmoid",
    "step",
    "warmup_factor",
]


def fixed(cfg: SolverConfig, it: int) -> float:
    """``base_lr``, always."""
    return float(cfg.base_lr)


def step(cfg: SolverConfig, it: int) -> float:
    """``base_lr * gamma ** floor(it / stepsize)``."""
    if cfg.stepsize <= 0:
        raise SpecError("lr_policy 'step' needs stepsize > 0", hint="set stepsize")
    current_step = it // cfg.stepsize
    return cfg.base_lr * cfg.gamma**current_step


def exp(cfg: SolverConfig, it: int) -> float:
    """``base_lr * gamma ** it``."""
    return cfg.base_lr * cfg.gamma**it


def inv(cfg: SolverConfig, it: int) -> float:
    """``base_lr * (1 + gamma * it) ** (-power)``; needs ``1 + gamma * it > 0`` (gamma >= 0)."""
    base = 1.0 + cfg.gamma * it
    if base <= 0.0:
        raise SpecError(
            f"lr_policy 'inv' is undefined at iteration {it}: 1 + gamma * iter = {base:g}",
            hint=f"inv needs gamma >= 0, got {cfg.gamma}",
        )
    return cfg.base_lr * math.pow(base, -cfg.power)


def multistep(cfg: SolverConfig, it: int) -> float:
    """``base_lr * gamma ** k`` where ``k`` counts the stepvalues already reached.

    Caffe advances ``current_step_`` by at most one per iteration while ``it >=
    stepvalue[current_step_]``; for the strictly increasing stepvalues that
    :meth:`SolverConfig.validate` requires, and a solver that visits every iteration, that is
    the number of ``stepvalue[k] <= it``, which is what this computes without any state.
    """
    current_step = sum(1 for v in cfg.stepvalue if it >= v)
    return cfg.base_lr * cfg.gamma**current_step


def poly(cfg: SolverConfig, it: int) -> float:
    """``base_lr * (1 - it / max_iter) ** power``, reaching 0 at ``max_iter``.

    Past ``max_iter`` Caffe would raise a negative number to a fractional power (NaN); the
    training loop never gets there, and this returns 0 instead.
    """
    if cfg.max_iter <= 0:
        raise SpecError(
            "lr_policy 'poly' needs max_iter > 0",
            hint="set max_iter, or resolve max_epochs into max_iter first "
            "(netdsl.runtime.solver.resolve_max_iter)",
        )
    frac = 1.0 - float(it) / float(cfg.max_iter)
    if frac < 0.0:
        return 0.0
    return cfg.base_lr * math.pow(frac, cfg.power)


def sigmoid(cfg: SolverConfig, it: int) -> float:
    """``base_lr * 1 / (1 + exp(-gamma * (it - stepsize)))``, ``base_lr / 2`` at ``stepsize``.

    ``gamma < 0`` decays from ``base_lr`` towards 0, ``gamma > 0`` rises from 0 towards
    ``base_lr``; ``|gamma|`` sets how sharply the rate turns around ``stepsize``.
    """
    try:
        e = math.exp(-cfg.gamma * (float(it) - float(cfg.stepsize)))
    except OverflowError:  # Caffe's float gives inf here, hence a rate of 0
        return 0.0
    return cfg.base_lr * (1.0 / (1.0 + e))


# --------------------------------------------------------------------------- plateau


@dataclass(frozen=True)
class PlateauState:
    """What the ``plateau`` policy remembers between tests.

    ``best`` is the best metric seen so far (``-inf``/``+inf`` before the first test, for mode
    ``max``/``min``), ``bad_tests`` the number of consecutive tests since it last improved (or
    since the last drop), ``drops`` how many times the rate has been divided so far.
    """

    best: float = -math.inf
    bad_tests: int = 0
    drops: int = 0

    @classmethod
    def initial(cls, cfg: SolverConfig) -> PlateauState:
        """The state before any test: nothing seen, no drop."""
        return cls(best=math.inf if cfg.plateau_mode == "min" else -math.inf)

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """Plain tensors for a safetensors snapshot (keys ``plateau.*``)."""
        return {
            "plateau.best": torch.tensor(self.best, dtype=torch.float64),
            "plateau.bad_tests": torch.tensor(self.bad_tests, dtype=torch.int64),
            "plateau.drops": torch.tensor(self.drops, dtype=torch.int64),
        }

    @classmethod
    def from_tensors(cls, d: Mapping[str, torch.Tensor]) -> PlateauState:
        """Inverse of :meth:`as_tensors`; extra keys in ``d`` are ignored."""
        keys = ("plateau.best", "plateau.bad_tests", "plateau.drops")
        missing = [k for k in keys if k not in d]
        if missing:
            raise DataError(
                f"snapshot has no plateau state (missing {', '.join(missing)})",
                hint="was the snapshot written with a different lr_policy?",
            )
        for k in keys:
            if d[k].numel() != 1:
                raise DataError(
                    f"snapshot entry '{k}' should be a scalar, has shape {tuple(d[k].shape)}"
                )
        return cls(
            best=float(d["plateau.best"].item()),
            bad_tests=int(d["plateau.bad_tests"].item()),
            drops=int(d["plateau.drops"].item()),
        )


def _improved(cfg: SolverConfig, best: float, metric: float) -> bool:
    # A NaN metric never counts as an improvement (both comparisons are False).
    if cfg.plateau_mode == "min":
        return metric < best
    return metric > best


def plateau_update(cfg: SolverConfig, state: PlateauState | None, metric: float) -> PlateauState:
    """The plateau state after a test that measured ``metric`` (``cfg.plateau_metric``).

    An improvement (strictly better than the best so far, in ``cfg.plateau_mode``) records the
    new best and clears the bad-test counter. Otherwise the counter grows; when it reaches
    ``cfg.patience`` and fewer than ``cfg.max_drops`` drops have happened, the rate drops once
    more and the counter restarts, so a further drop needs ``patience`` more bad tests. The best
    value is kept across drops.
    """
    if state is None:
        state = PlateauState.initial(cfg)
    metric = float(metric)
    if _improved(cfg, state.best, metric):
        return replace(state, best=metric, bad_tests=0)
    bad = state.bad_tests + 1
    if bad >= cfg.patience and state.drops < cfg.max_drops:
        return replace(state, bad_tests=0, drops=state.drops + 1)
    return replace(state, bad_tests=bad)


def plateau_exhausted(cfg: SolverConfig, state: PlateauState | None) -> bool:
    """True once every drop is spent and the metric has again stalled for ``patience`` tests.

    The paper trained until this point ("reduced three times prior to termination"); a loop
    may use it to stop early.
    """
    if state is None:
        return False
    return state.drops >= cfg.max_drops and state.bad_tests >= cfg.patience


def plateau(cfg: SolverConfig, it: int, state: PlateauState | None = None) -> float:
    """``base_lr * gamma ** drops``; ``it`` is unused, the state carries the history."""
    drops = 0 if state is None else state.drops
    return cfg.base_lr * cfg.gamma**drops


# --------------------------------------------------------------------------- dispatch

POLICIES: dict[str, Callable[[SolverConfig, int], float]] = {
    "fixed": fixed,
    "step": step,
    "multistep": multistep,
    "exp": exp,
    "inv": inv,
    "poly": poly,
    "sigmoid": sigmoid,
    "plateau": plateau,
}
"""Every policy by its Caffe name (``plateau`` called this way assumes no drop yet)."""


def warmup_factor(cfg: SolverConfig, it: int) -> float:
    """``warmup_start_factor + (1 - warmup_start_factor) * it / warmup_iter`` during warmup,
    1 afterwards (and always, when ``warmup_iter`` is 0)."""
    if cfg.warmup_iter <= 0 or it >= cfg.warmup_iter:
        return 1.0
    f = cfg.warmup_start_factor
    return f + (1.0 - f) * (float(it) / float(cfg.warmup_iter))


def learning_rate(cfg: SolverConfig, it: int, plateau_state: PlateauState | None = None) -> float:
    """The rate Caffe's solver would use at iteration ``it``, times the warmup factor.

    ``plateau_state`` is only read by the ``plateau`` policy (``None`` means no test yet).
    """
    name = cfg.lr_policy
    if name == "plateau":
        lr = plateau(cfg, it, plateau_state)
    else:
        fn = POLICIES.get(name)
        if fn is None:
            raise SpecError(
                f"unknown lr_policy '{name}'",
                hint=did_you_mean(name, POLICIES) or f"one of {', '.join(POLICIES)}",
            )
        lr = fn(cfg, it)
    return lr * warmup_factor(cfg, it)
