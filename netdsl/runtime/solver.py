"""Caffe's solver update rule (``Solver::ApplyUpdate``) as a torch optimizer.

The configuration is ``netdsl.sections.SolverConfig`` (typed at the build stage).
:class:`CaffeOptimizer` applies ``Solver::ApplyUpdate`` as ``SGDSolver`` and its subclasses do
it, which differs from ``torch.optim`` in ways that change results:

* the learning rate is folded into the momentum history (``v = m*v + lr*g; w -= v``), so after
  an lr drop the history still moves at the old rate for a while (torch's SGD applies the new
  rate to the whole velocity at once);
* gradients are clipped on their global L2 norm *before* being divided by ``iter_size``;
* weight decay is added to the gradient (L2) or its sign (L1) with a per-blob ``decay_mult``,
  and the rate is multiplied by a per-blob ``lr_mult``.

Each solver type's update is one function in :data:`UPDATES`. The training loop calls
``opt.step(learning_rate(cfg, it, plateau_state))`` once per iteration, after ``iter_size``
accumulated backward passes, and zeroes the gradients after.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from netdsl.diagnostics import DataError, SpecError
from netdsl.sections import SolverConfig, SolverType

__all__ = ["UPDATES", "CaffeOptimizer", "UpdateRule"]


# --------------------------------------------------------------------------- update rule

Tensor = torch.Tensor


def _sgd(p: Tensor, g: Tensor, rate: float, bufs: list[Tensor], cfg: SolverConfig,
         t: int) -> None:
    """``SGDSolver::ComputeUpdateValue``: ``h = momentum * h + rate * g; p -= h``."""
    (h,) = bufs
    h.mul_(cfg.momentum).add_(g, alpha=rate)
    p.sub_(h)


def _nesterov(p: Tensor, g: Tensor, rate: float, bufs: list[Tensor], cfg: SolverConfig,
              t: int) -> None:
    """``NesterovSolver``: step back, then over-step: ``(1 + m) h_new - m h_old``."""
    (h,) = bufs
    old = h.clone()
    h.mul_(cfg.momentum).add_(g, alpha=rate)
    p.sub_(h * (1.0 + cfg.momentum) - old * cfg.momentum)


def _adagrad(p: Tensor, g: Tensor, rate: float, bufs: list[Tensor], cfg: SolverConfig,
             t: int) -> None:
    """``AdaGradSolver``: ``h += g^2; p -= rate * g / (sqrt(h) + delta)``."""
    (h,) = bufs
    h.add_(g * g)
    p.sub_(g / (h.sqrt() + cfg.delta) * rate)


def _rmsprop(p: Tensor, g: Tensor, rate: float, bufs: list[Tensor], cfg: SolverConfig,
             t: int) -> None:
    """``RMSPropSolver``: ``h = d h + (1 - d) g^2; p -= rate * g / (sqrt(h) + delta)``."""
    (h,) = bufs
    h.mul_(cfg.rms_decay).add_(g * g, alpha=1.0 - cfg.rms_decay)
    p.sub_(g / (h.sqrt() + cfg.delta) * rate)


def _adadelta(p: Tensor, g: Tensor, rate: float, bufs: list[Tensor], cfg: SolverConfig,
              t: int) -> None:
    """``AdaDeltaSolver``: both histories decay by ``momentum``."""
    h, h2 = bufs
    m = cfg.momentum
    h.mul_(m).add_(g * g, alpha=1.0 - m)
    upd = g * ((h2 + cfg.delta) / (h + cfg.delta)).sqrt()
    h2.mul_(m).add_(upd * upd, alpha=1.0 - m)
    p.sub_(upd * rate)


def _adam(p: Tensor, g: Tensor, rate: float, bufs: list[Tensor], cfg: SolverConfig,
          t: int) -> None:
    """``AdamSolver``, bias-corrected at step ``t`` (Caffe's ``iter_ + 1``)."""
    mbuf, vbuf = bufs
    b1, b2 = cfg.momentum, cfg.momentum2
    correction = math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    mbuf.mul_(b1).add_(g, alpha=1.0 - b1)
    vbuf.mul_(b2).add_(g * g, alpha=1.0 - b2)
    p.sub_(mbuf / (vbuf.sqrt() + cfg.delta) * (rate * correction))


@dataclass(frozen=True)
class UpdateRule:
    """One solver type's update: its history buffers, in Caffe's order (``history_[i]``,
    then ``history_[N + i]``), and ``apply(p, g, rate, buffers, cfg, step)``."""

    slots: tuple[str, ...]
    apply: Callable[[Tensor, Tensor, float, list[Tensor], SolverConfig, int], None]


#: Every solver type's update rule, as ``lr_policy.POLICIES`` holds every lr policy.
UPDATES: dict[SolverType, UpdateRule] = {
    SolverType.SGD: UpdateRule(("history",), _sgd),
    SolverType.Nesterov: UpdateRule(("history",), _nesterov),
    SolverType.AdaGrad: UpdateRule(("history",), _adagrad),
    SolverType.RMSProp: UpdateRule(("history",), _rmsprop),
    SolverType.AdaDelta: UpdateRule(("history", "update_history"), _adadelta),
    SolverType.Adam: UpdateRule(("m", "v"), _adam),
}

ITER_KEY = "iter"


class CaffeOptimizer(torch.optim.Optimizer):
    """Caffe's ``SGDSolver::ApplyUpdate`` (and its Nesterov/AdaGrad/RMSProp/AdaDelta/Adam
    variants) as a ``torch.optim.Optimizer``.

    ``param_groups`` are dicts with ``"params"`` and optionally ``"lr_mult"`` and
    ``"decay_mult"`` (both 1.0 by default), like Caffe's per-blob ``param { lr_mult decay_mult }``.
    The rate is not stored: pass it to :meth:`step` each iteration.

    As in Caffe, :meth:`step` rewrites the gradients in place (clipped, divided by
    ``iter_size``, plus weight decay); zero them before the next accumulation. Parameters whose
    ``grad`` is ``None`` are left alone (no decay either). ``iteration`` counts the steps taken
    (Caffe's ``iter_``, which Adam's bias correction uses).
    """

    def __init__(
        self, param_groups: Iterable[dict[str, Any]] | Iterable[torch.Tensor], cfg: SolverConfig
    ) -> None:
        super().__init__(param_groups, {"lr_mult": 1.0, "decay_mult": 1.0})
        self.cfg = cfg
        self.iteration = 0

    # ---------------------------------------------------------------- buffers

    @property
    def slots(self) -> tuple[str, ...]:
        """Names of the history buffers each parameter has under this solver type."""
        return UPDATES[self.cfg.type].slots

    def _buffer(self, p: torch.Tensor, slot: str) -> torch.Tensor:
        st = self.state[p]
        buf: torch.Tensor | None = st.get(slot)
        if buf is None:
            buf = torch.zeros_like(p, memory_format=torch.preserve_format)
            st[slot] = buf
        return buf

    def _keyed_params(self) -> list[tuple[str, torch.Tensor, str]]:
        out = []
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                for slot in self.slots:
                    out.append((f"history.{g}.{i}.{slot}", p, slot))
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """All history buffers and the iteration count as plain CPU tensors (copies).

        Keys are ``history.{group}.{index}.{slot}`` (slots: :attr:`slots`) and ``iter`` (a
        0-d int64), ready for ``safetensors.torch.save_file``. Buffers of parameters that have
        not been stepped yet are included as zeros, as Caffe's would be.
        """
        out: dict[str, torch.Tensor] = {ITER_KEY: torch.tensor(self.iteration, dtype=torch.int64)}
        for key, p, slot in self._keyed_params():
            out[key] = self._buffer(p, slot).detach().to("cpu", copy=True).contiguous()
        return out

    def load_state_tensors(self, d: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned; the inverse, bit for bit.

        Raises :class:`DataError` when the keys or shapes do not match this optimizer's
        parameters and solver type; nothing is changed in that case.
        """
        keyed = self._keyed_params()
        expected = {k for k, _, _ in keyed} | {ITER_KEY}
        got = set(d)
        missing = sorted(expected - got)
        extra = sorted(got - expected)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {_some(missing)}")
            if extra:
                parts.append(f"unexpected {_some(extra)}")
            raise DataError(
                "solver state does not fit this net and solver: " + "; ".join(parts),
                hint=f"this solver is {self.cfg.type.value} with slots {', '.join(self.slots)}; "
                "was the snapshot written by another solver type or another net?",
            )
        it = d[ITER_KEY]
        if it.numel() != 1 or it.is_floating_point() or it.is_complex():
            raise DataError(
                f"solver state '{ITER_KEY}' should be an integer scalar, has "
                f"dtype {it.dtype} and shape {tuple(it.shape)}"
            )
        for key, p, _ in keyed:
            if tuple(d[key].shape) != tuple(p.shape):
                raise DataError(
                    f"solver state '{key}' has shape {tuple(d[key].shape)}, but "
                    f"its parameter has shape {tuple(p.shape)}"
                )
        with torch.no_grad():
            for key, p, slot in keyed:
                self._buffer(p, slot).copy_(d[key])
        self.iteration = int(it.item())

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["iteration"] = self.iteration
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        iteration = int(state_dict.pop("iteration", 0))
        super().load_state_dict(state_dict)
        self.iteration = iteration

    # ---------------------------------------------------------------- update

    @torch.no_grad()
    def step(self, lr: float) -> None:  # type: ignore[override]  # takes the rate, not a closure
        """Apply one Caffe update at rate ``lr`` (from ``lr_policy.learning_rate``).

        Order as ``SGDSolver::ApplyUpdate``: clip on the global norm, then per blob
        normalize by ``iter_size``, regularize, compute the update value, and subtract it.
        """
        cfg = self.cfg
        live = [
            (group, p) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if cfg.clip_gradients >= 0 and live:
            self._clip([p.grad for _, p in live], cfg.clip_gradients)
        for group, p in live:
            g = p.grad
            if g.is_sparse:
                raise TypeError("CaffeOptimizer does not support sparse gradients")
            if cfg.iter_size != 1:
                g.mul_(1.0 / cfg.iter_size)
            local_decay = cfg.weight_decay * group["decay_mult"]
            if local_decay:
                if cfg.regularization_type == "L2":
                    g.add_(p, alpha=local_decay)
                elif cfg.regularization_type == "L1":
                    g.add_(torch.sign(p), alpha=local_decay)
                else:
                    raise SpecError(
                        f"unknown regularization_type '{cfg.regularization_type}'",
                        hint="'L1' or 'L2'",
                    )
            self._update(p, g, lr * group["lr_mult"])
        self.iteration += 1

    @staticmethod
    def _clip(grads: list[torch.Tensor], clip: float) -> None:
        # Global L2 norm over every blob; scale only when it exceeds clip. The comparison is
        # kept on the device (scale 1.0 is exact) so that it does not force a sync.
        norms = [torch.linalg.vector_norm(g) for g in grads]
        dev = norms[0].device
        dtype = functools.reduce(torch.promote_types, (n.dtype for n in norms))
        total = torch.linalg.vector_norm(torch.stack([n.to(dev, dtype) for n in norms]))
        scale = torch.where(total > clip, clip / total, torch.ones_like(total))
        for g in grads:
            g.mul_(scale.to(device=g.device, dtype=g.dtype))

    def _update(self, p: torch.Tensor, g: torch.Tensor, rate: float) -> None:
        rule = UPDATES[self.cfg.type]
        rule.apply(p, g, rate, [self._buffer(p, slot) for slot in rule.slots], self.cfg,
                   self.iteration + 1)


def _some(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")
