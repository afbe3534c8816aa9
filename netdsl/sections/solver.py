"""The ``solver {}`` section, typed: Caffe's ``SolverParameter`` as :class:`SolverConfig`.

:class:`SolverConfig` holds the fields of Caffe's ``SolverParameter`` (plus netdsl's plateau
and warmup fields); every field carries a one-line doc in ``metadata["doc"]``, and fields that
are accepted for compatibility but change nothing also carry ``metadata["no_effect"] = True``.
:meth:`SolverConfig.validate` checks every range as Caffe's solver does, policy by policy.
:func:`solver_section` builds it from the spec's section (or a Caffe ``solver.prototxt``) at
the build stage, so every error is a ``file:line:col`` diagnostic before torch is imported;
the runtime's update rule and lr policies read the typed value.
"""

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .. import syntax as s
from ..diagnostics import NetdslError, Span, SpecError, did_you_mean, raise_all
from ..fields import convert, field_spans

__all__ = [
    "DEFAULT_EPOCHS",
    "LR_POLICIES",
    "SolverConfig",
    "SolverType",
    "resolve_max_iter",
    "solver_section",
]

#: The lr policies' names (``netdsl.runtime.lr_policy.POLICIES`` computes each).
LR_POLICIES = ("fixed", "step", "multistep", "exp", "inv", "poly", "sigmoid", "plateau")

#: Epochs trained when the solver says neither ``max_iter`` nor ``max_epochs``.
DEFAULT_EPOCHS = 1.0


class SolverType(enum.Enum):
    """Caffe's solver types, named and spelt as in ``SolverParameter.type``."""

    SGD = "SGD"
    Nesterov = "Nesterov"
    AdaGrad = "AdaGrad"
    RMSProp = "RMSProp"
    AdaDelta = "AdaDelta"
    Adam = "Adam"

    @classmethod
    def parse(cls, text: "str | SolverType", span: Span | None = None) -> "SolverType":
        """The type named ``text``, in any case (so Caffe's old ``NESTEROV`` works too)."""
        if isinstance(text, SolverType):
            return text
        key = str(text).strip().lower()
        for member in cls:
            if member.value.lower() == key:
                return member
        names = [m.value for m in cls]
        raise SpecError(
            f"unknown solver type '{text}'",
            span=span,
            hint=did_you_mean(str(text), names) or f"one of {', '.join(names)}",
        )


def _f(default: Any, doc: str, *, no_effect: bool = False) -> Any:
    meta: dict[str, Any] = {"doc": doc}
    if no_effect:
        meta["no_effect"] = True
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SolverConfig:
    """Caffe's ``SolverParameter``, plus netdsl's plateau policy, warmup and ``max_epochs``.

    Defaults are Caffe's, except ``base_lr`` (Caffe has none) and ``lr_policy`` (Caffe
    requires one). String values for ``type``, and lists for ``stepvalue`` / ``test_iter``,
    are coerced on construction; :meth:`validate` rejects impossible combinations.
    """

    # --- update rule
    type: SolverType = _f(
        SolverType.SGD, "solver: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta or Adam"
    )
    base_lr: float = _f(0.01, "base learning rate, before lr_policy, lr_mult and warmup")
    momentum: float = _f(
        0.0, "momentum (SGD, Nesterov), decay of both histories (AdaDelta), beta1 (Adam)"
    )
    momentum2: float = _f(0.999, "beta2, the decay of Adam's second-moment estimate")
    delta: float = _f(1e-8, "epsilon added to denominators (AdaGrad, RMSProp, AdaDelta, Adam)")
    rms_decay: float = _f(0.99, "decay of RMSProp's mean squared gradient")
    weight_decay: float = _f(0.0, "regularization strength, times each blob's decay_mult")
    regularization_type: str = _f("L2", "weight decay on the weights (L2) or their sign (L1)")
    iter_size: int = _f(1, "accumulate gradients over this many batches per update")
    clip_gradients: float = _f(-1.0, "scale gradients down to this global L2 norm (< 0 = off)")

    # --- learning-rate schedule
    lr_policy: str = _f("fixed", "fixed, step, multistep, exp, inv, poly, sigmoid or plateau")
    gamma: float = _f(
        0.0, "rate factor of step, multistep, exp, inv and plateau; sigmoid's slope (< 0 decays)"
    )
    stepsize: int = _f(0, "iterations between drops (step); midpoint of the sigmoid")
    stepvalue: tuple[int, ...] = _f((), "iterations at which multistep multiplies lr by gamma")
    power: float = _f(0.0, "exponent of inv and poly")
    max_iter: int = _f(0, "number of iterations to train; poly reaches 0 here")
    max_epochs: float = _f(0.0, "train for this many epochs instead of max_iter (0 = unused)")
    warmup_iter: int = _f(0, "ramp the rate up linearly over this many iterations (0 = off)")
    warmup_start_factor: float = _f(0.1, "warmup starts at this fraction of the scheduled rate")

    # --- plateau policy (netdsl's: the validation metric, not Caffe's smoothed train loss)
    plateau_metric: str = _f("accuracy", "test output watched by the plateau policy")
    plateau_mode: str = _f("max", "whether plateau_metric improves going up (max) or down (min)")
    patience: int = _f(5, "plateau: tests without improvement before lr is multiplied by gamma")
    max_drops: int = _f(3, "plateau: the rate drops at most this many times")

    # --- testing, display, snapshots
    test_interval: int = _f(0, "test every this many iterations (0 = never)")
    test_iter: int = _f(0, "batches per test (Caffe's repeated field: the first is used)")
    test_initialization: bool = _f(True, "also test before the first iteration")
    display: int = _f(0, "print the loss every this many iterations (0 = never)")
    average_loss: int = _f(1, "displayed loss is averaged over this many iterations")
    snapshot: int = _f(0, "write a snapshot every this many iterations (0 = never)")
    snapshot_prefix: str = _f("", "path prefix of snapshot files")
    random_seed: int = _f(-1, "seed for torch, numpy and data order (< 0 = unseeded)")

    # --- accepted from Caffe's solver.prototxt, without effect here
    net: str = _f(
        "", "Caffe's net file; netdsl takes the net from the command line", no_effect=True
    )
    train_net: str = _f("", "Caffe's train net file (ignored)", no_effect=True)
    test_net: str = _f("", "Caffe's test net file (ignored)", no_effect=True)
    solver_mode: str = _f(
        "GPU", "Caffe's CPU/GPU switch; netdsl places layers itself", no_effect=True
    )
    device_id: int = _f(0, "Caffe's GPU id; netdsl places layers itself", no_effect=True)
    snapshot_after_train: bool = _f(True, "Caffe's final snapshot switch (ignored)", no_effect=True)
    snapshot_format: str = _f(
        "BINARYPROTO", "Caffe's snapshot format; netdsl writes safetensors", no_effect=True
    )
    snapshot_diff: bool = _f(False, "Caffe's switch to snapshot diffs (ignored)", no_effect=True)
    debug_info: bool = _f(False, "Caffe's per-layer debug output (ignored)", no_effect=True)
    test_compute_loss: bool = _f(False, "Caffe's test-loss switch (ignored)", no_effect=True)
    layer_wise_reduce: bool = _f(True, "Caffe's multi-GPU reduce overlap (ignored)", no_effect=True)
    solver_type: str = _f(
        "", "Caffe's deprecated solver-type enum; used when type is not set", no_effect=True
    )

    def __post_init__(self) -> None:
        # Coerce the forms a converter or a hand-written call is likely to pass.
        set_ = object.__setattr__
        if not isinstance(self.type, SolverType):
            set_(self, "type", SolverType.parse(self.type))
        if self.solver_type and self.type is SolverType.SGD:
            # Caffe's UpgradeSolverType: the old enum fills in ``type`` when it was not given.
            set_(self, "type", SolverType.parse(self.solver_type))
        if isinstance(self.stepvalue, list | range):
            set_(self, "stepvalue", tuple(self.stepvalue))
        elif isinstance(self.stepvalue, int):
            set_(self, "stepvalue", (self.stepvalue,))
        if isinstance(self.test_iter, list | tuple):
            set_(self, "test_iter", int(self.test_iter[0]) if self.test_iter else 0)

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Every field's one-line doc, in declaration order."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}

    def validate(self, spans: Mapping[str, Span] | None = None) -> None:
        """Raise :class:`SpecError` (an ``ErrorList`` of them if several) for impossible settings.

        ``spans`` maps field names to where they were written (``fields.field_spans``), so
        each error points at the field it is about or, when that field was left at its default,
        at the field that made the default wrong (``lr_policy`` for a missing ``stepsize``).
        """
        errors: list[NetdslError] = []

        def err(name: str, message: str, hint: str | None = None) -> None:
            span = None
            if spans:
                span = spans.get(name) or spans.get(_BLAME.get(name, ""))
            errors.append(SpecError(message, span=span, hint=hint))

        # NaN or inf in a float field: refused here, and left out of the range checks below
        # (which NaN would fail with a less helpful message, or pass).
        nonfinite = set()
        for name in _FINITE_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value):
                nonfinite.add(name)
                err(name, f"{name} must be a finite number, got {value}", _FINITE_HINTS.get(name))

        def checked(name: str) -> bool:
            return name not in nonfinite

        if not -2**63 <= self.random_seed < 2**63:  # Caffe's int64, which torch takes
            err("random_seed", f"random_seed must fit in 64 bits (0 to 2^63 - 1; negative: "
                f"unseeded), got {self.random_seed}")
        policy = self.lr_policy
        if checked("base_lr") and self.base_lr < 0:
            err("base_lr", f"base_lr must not be negative, got {self.base_lr}")
        if policy not in LR_POLICIES:
            err(
                "lr_policy",
                f"unknown lr_policy '{policy}'",
                did_you_mean(policy, LR_POLICIES) or f"one of {', '.join(LR_POLICIES)}",
            )
        if checked("gamma"):
            self._check_gamma(policy, err)
        if policy == "step" and self.stepsize <= 0:
            err(
                "stepsize",
                "lr_policy 'step' needs stepsize > 0",
                "stepsize is the number of iterations between drops",
            )
        if policy == "sigmoid" and self.stepsize <= 0:
            err("stepsize", "lr_policy 'sigmoid' needs stepsize > 0 (the sigmoid's midpoint)")
        if policy == "multistep":
            if not self.stepvalue:
                err(
                    "stepvalue",
                    "lr_policy 'multistep' needs at least one stepvalue",
                    "give the iterations at which the rate drops, e.g. stepvalue: 10000",
                )
            elif any(v < 0 for v in self.stepvalue):
                err("stepvalue", f"stepvalue must not be negative, got {list(self.stepvalue)}")
            elif any(b <= a for a, b in zip(self.stepvalue, self.stepvalue[1:], strict=False)):
                err(
                    "stepvalue",
                    f"stepvalue must be strictly increasing, got {list(self.stepvalue)}",
                )
        if policy == "poly":
            if self.max_iter <= 0 and self.max_epochs <= 0:
                err("max_iter", "lr_policy 'poly' needs max_iter (or max_epochs) > 0")
            if checked("power") and self.power < 0:
                err("power", f"lr_policy 'poly' needs power >= 0, got {self.power}")
        if policy == "plateau":
            if self.patience < 1:
                err("patience", f"lr_policy 'plateau' needs patience >= 1, got {self.patience}")
            if self.max_drops < 0:
                err("max_drops", f"max_drops must not be negative, got {self.max_drops}")
            if self.plateau_mode not in ("max", "min"):
                err(
                    "plateau_mode",
                    f"plateau_mode must be 'max' or 'min', got '{self.plateau_mode}'",
                )
            if not self.plateau_metric:
                err("plateau_metric", "lr_policy 'plateau' needs plateau_metric")
            if self.test_interval <= 0:
                err(
                    "test_interval",
                    "lr_policy 'plateau' needs test_interval > 0",
                    "the rate drops when the tested plateau_metric stops improving",
                )
        if self.max_iter < 0:
            err("max_iter", f"max_iter must not be negative, got {self.max_iter}")
        if checked("max_epochs") and self.max_epochs < 0:
            err("max_epochs", f"max_epochs must not be negative, got {self.max_epochs}")
        if self.max_iter > 0 and self.max_epochs > 0:
            err("max_epochs", "set max_iter or max_epochs, not both")
        if self.iter_size < 1:
            err("iter_size", f"iter_size must be at least 1, got {self.iter_size}")
        if self.regularization_type not in ("L1", "L2"):
            err(
                "regularization_type",
                f"regularization_type must be 'L1' or 'L2', got '{self.regularization_type}'",
            )
        if checked("weight_decay") and self.weight_decay < 0:
            err("weight_decay", f"weight_decay must not be negative, got {self.weight_decay}")
        if checked("delta") and self.delta < 0:
            err("delta", f"delta must not be negative, got {self.delta}")
        if checked("momentum") and not 0 <= self.momentum < 1:
            err("momentum", f"momentum must lie in [0, 1), got {self.momentum}")
        if (
            checked("momentum")
            and self.type in (SolverType.AdaGrad, SolverType.RMSProp)
            and self.momentum != 0
        ):
            err("momentum", f"momentum cannot be used with {self.type.value}")
        if self.type is SolverType.Adam and checked("momentum2") and not 0 <= self.momentum2 < 1:
            err("momentum2", f"momentum2 must lie in [0, 1), got {self.momentum2}")
        if self.type is SolverType.RMSProp and checked("rms_decay") and not 0 <= self.rms_decay < 1:
            err("rms_decay", f"rms_decay must lie in [0, 1), got {self.rms_decay}")
        if self.warmup_iter < 0:
            err("warmup_iter", f"warmup_iter must not be negative, got {self.warmup_iter}")
        if checked("warmup_start_factor") and not 0 <= self.warmup_start_factor <= 1:
            err(
                "warmup_start_factor",
                f"warmup_start_factor must lie in [0, 1], got {self.warmup_start_factor}",
            )
        for name in ("test_interval", "test_iter", "display", "snapshot"):
            if getattr(self, name) < 0:
                err(name, f"{name} must not be negative, got {getattr(self, name)}")
        if self.test_interval > 0 and self.test_iter < 1:
            err(
                "test_iter",
                "test_interval is set but test_iter is not",
                "test_iter is the number of batches per test",
            )
        if self.average_loss < 1:
            err("average_loss", f"average_loss must be at least 1, got {self.average_loss}")
        if self.solver_type:
            try:
                old = SolverType.parse(self.solver_type)
            except SpecError as e:
                err("solver_type", e.message, e.hint)
            else:
                if old is not self.type:
                    err(
                        "solver_type",
                        f"solver_type {self.solver_type} contradicts type {self.type.value}",
                        "remove the deprecated solver_type",
                    )
        raise_all(errors)

    def _check_gamma(self, policy: str, err: Callable[[str, str, str | None], None]) -> None:
        """gamma's range under ``policy``, as Caffe's ``GetLearningRate`` uses it.

        * step, multistep, exp, plateau: the rate is ``base_lr * gamma ** k``; a negative gamma
          flips the rate's sign at every drop (Caffe 1.0 let it through; its master has
          ``CHECK_GE(gamma, 0)``), and gamma 0 leaves the rate 0 after the first drop.
        * inv: ``(1 + gamma * iter) ** -power`` is undefined once ``1 + gamma * iter`` drops to 0
          or below, which a negative gamma reaches at iteration ``ceil(1 / -gamma)`` (Caffe's
          master has ``CHECK_GE(gamma, 0)`` here too).
        * sigmoid: ``1 / (1 + exp(-gamma * (iter - stepsize)))`` is defined for any gamma: a
          negative gamma decays from base_lr to 0 around stepsize, a positive one rises from 0
          to base_lr (gamma 0 keeps base_lr / 2). Caffe 1.0 accepts any gamma; BVLC master has
          since added ``CHECK_GE(gamma, 0)``, which rules out the decay its own docs describe.
        * fixed, poly: gamma is not used.
        """
        gamma = self.gamma
        if policy in _GAMMA_FACTOR_POLICIES:
            if gamma < 0:
                err(
                    "gamma",
                    f"lr_policy '{policy}' needs gamma >= 0, got {gamma}: the rate is "
                    f"base_lr * gamma^k, so a negative gamma would make it negative at "
                    f"every other {_GAMMA_STEP[policy]}",
                    _GAMMA_HINTS[policy],
                )
            elif gamma == 0:
                err(
                    "gamma",
                    f"lr_policy '{policy}' needs gamma, the factor applied to the rate",
                    _GAMMA_HINTS[policy],
                )
        elif policy == "inv" and gamma < 0:
            err(
                "gamma",
                f"lr_policy 'inv' needs gamma >= 0, got {gamma}: the rate is "
                f"base_lr * (1 + gamma * iter)^(-power), which is undefined once "
                f"1 + gamma * iter <= 0 ({_inv_breakdown(gamma)})",
                "inv decays the rate for gamma > 0, e.g. gamma: 0.0001 power: 0.75",
            )


# Float fields that must hold a finite number (the converter lets nan and inf through).
_FINITE_FIELDS: tuple[str, ...] = (
    "base_lr",
    "gamma",
    "power",
    "momentum",
    "momentum2",
    "delta",
    "rms_decay",
    "weight_decay",
    "clip_gradients",
    "warmup_start_factor",
    "max_epochs",
)
_FINITE_HINTS: dict[str, str] = {
    "clip_gradients": "a negative clip_gradients (the default, -1) turns clipping off",
    "max_epochs": "give the number of epochs to train, or max_iter instead",
}

# Policies whose rate is base_lr * gamma ** k, and what k counts.
_GAMMA_STEP: dict[str, str] = {
    "step": "step",
    "multistep": "stepvalue",
    "exp": "iteration",
    "plateau": "drop",
}
_GAMMA_FACTOR_POLICIES = tuple(_GAMMA_STEP)
_GAMMA_HINTS: dict[str, str] = {
    "step": "e.g. gamma: 0.1 divides the rate by 10 every stepsize iterations",
    "multistep": "e.g. gamma: 0.1 divides the rate by 10 at each stepvalue",
    "exp": "gamma multiplies the rate every iteration, e.g. gamma: 0.9999",
    "plateau": "e.g. gamma: 0.1 divides the rate by 10 at each drop",
}


def _inv_breakdown(gamma: float) -> str:
    """From which iteration ``1 + gamma * iter <= 0``, for a negative ``gamma``, in words."""
    limit = -1.0 / gamma
    if not math.isfinite(limit):
        return "only after more iterations than any run has"
    return f"from iteration {math.ceil(limit)} on"


# Where to point when a field left at its default is wrong because of another field.
_BLAME: dict[str, str] = {
    "gamma": "lr_policy",
    "stepsize": "lr_policy",
    "stepvalue": "lr_policy",
    "max_iter": "lr_policy",
    "power": "lr_policy",
    "patience": "lr_policy",
    "max_drops": "lr_policy",
    "plateau_mode": "lr_policy",
    "plateau_metric": "lr_policy",
    "test_interval": "lr_policy",
    "test_iter": "test_interval",
    "momentum": "type",
    "momentum2": "type",
    "rms_decay": "type",
    "warmup_start_factor": "warmup_iter",
}


def resolve_max_iter(cfg: SolverConfig, iters_per_epoch: float) -> SolverConfig:
    """``cfg`` with ``max_epochs`` turned into ``max_iter = ceil(max_epochs * iters_per_epoch)``.

    ``iters_per_epoch`` counts solver iterations (updates), i.e. batches / ``iter_size``.
    Unchanged when ``max_epochs`` is 0.
    """
    if cfg.max_epochs <= 0:
        return cfg
    return replace(
        cfg, max_iter=max(1, math.ceil(cfg.max_epochs * iters_per_epoch)), max_epochs=0.0
    )


def _from_set(span: Span | None) -> bool:
    """Whether a field was written by ``--set`` (the resolver gives it a ``<--set ...>`` path)."""
    return span is not None and span.path.startswith("<--set")


def solver_section(block: s.Block | None,
                   overrides: Mapping[str, Any] | None = None) -> SolverConfig:
    """The spec's ``solver {}`` section (or a Caffe solver file's) as a validated config.

    A spec without a solver section trains with Caffe's defaults (SGD, ``base_lr`` 0.01,
    ``lr_policy`` fixed, no momentum or decay). Caffe has no default length; netdsl trains
    :data:`DEFAULT_EPOCHS` epoch when neither ``max_iter`` nor ``max_epochs`` is given.
    ``--set solver.max_iter=N`` replaces a ``max_epochs`` written in the spec (and the other
    way round). ``overrides`` are typed values replacing fields after conversion (a
    program's or a test's), with the same precedence.
    """
    items: tuple[s.Item, ...] = block.items if block is not None else ()
    spans = field_spans(items)
    cfg = convert(SolverConfig, items, "solver")
    if cfg.max_iter > 0 and cfg.max_epochs > 0:
        if _from_set(spans.get("max_iter")) and not _from_set(spans.get("max_epochs")):
            cfg = replace(cfg, max_epochs=0.0)
        elif _from_set(spans.get("max_epochs")) and not _from_set(spans.get("max_iter")):
            cfg = replace(cfg, max_iter=0)
    if overrides:
        names = {f.name for f in fields(SolverConfig)}
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise SpecError(
                f"unknown solver field '{unknown[0]}'", None, did_you_mean(unknown[0], names)
            )
        values = dict(overrides)
        if values.get("max_iter") and "max_epochs" not in values:
            values["max_epochs"] = 0.0
        if values.get("max_epochs") and "max_iter" not in values:
            values["max_iter"] = 0
        try:
            cfg = replace(cfg, **values)
        except (TypeError, ValueError) as e:
            raise SpecError(f"invalid solver override: {e}") from None
    if cfg.max_iter <= 0 and cfg.max_epochs <= 0:
        cfg = replace(cfg, max_epochs=DEFAULT_EPOCHS)
    cfg.validate(spans)
    return cfg
