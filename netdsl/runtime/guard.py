"""The training loop's watch on a NaN or infinite loss (``--allow-nan`` to carry on).

A diverging run (the loss NaN or infinite) is stopped at the next display with a message
that says where and why it usually happens, instead of training on NaN weights to
``max_iter`` and snapshotting them. The check costs no host sync of its own: every
iteration ORs ``~isfinite(loss)`` into a flag on the loss's device (no ``.item()``), and
the flag is read where the loop syncs anyway: at display (the displayed loss is read
there) and before a snapshot is written (which copies the weights to the host). No
snapshot is written once the flag is up, so the newest one on disk is the last good one.
``--allow-nan`` (``allow=True``) warns once and carries on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from netdsl.diagnostics import NetdslError, Span

if TYPE_CHECKING:
    from netdsl.runtime.progress import Reporter
    from netdsl.runtime.train import Trainer

__all__ = ["LossGuard", "NonFiniteLoss", "check_loss", "weights_finite"]

log = logging.getLogger("netdsl")

CAUSES = ("usual causes: a learning rate too high for the net (lower solver.base_lr, or "
          "set solver.clip_gradients), or input data out of the range the net expects "
          "(check the data's scale and mean); --allow-nan carries on regardless")


class NonFiniteLoss(NetdslError):
    """Training stopped on a NaN or infinite loss (the CLI exits 1)."""


class LossGuard:
    """Accumulates on the device whether any loss since the last check was not finite."""

    def __init__(self, allow: bool = False) -> None:
        self.allow = allow
        self._bad: torch.Tensor | None = None
        self.last_finite: float | None = None  # the last finite displayed loss
        self.last_finite_iter: int | None = None
        self.warned = False

    def add(self, loss: torch.Tensor) -> None:
        """Record one iteration's loss (a 0-d tensor): device ops only, no sync."""
        flag = ~torch.isfinite(loss.detach())
        self._bad = flag if self._bad is None else self._bad | flag.to(self._bad.device)

    def displayed(self, it: int, loss: float) -> None:
        """The loss shown at display ``it``: remembered while it is finite."""
        if math.isfinite(loss):
            self.last_finite, self.last_finite_iter = loss, it

    def tripped(self, world_any: Callable[[bool], bool] | None = None) -> bool:
        """Whether a loss since the last call was NaN or infinite (reads the device flag;
        call it where the loop syncs anyway). ``world_any``: a function that ORs a flag
        over the processes of a run, so that all of them stop together."""
        bad = bool(self._bad.item()) if self._bad is not None else False
        self._bad = None
        if world_any is not None:
            bad = world_any(bad)
        return bad

    def stop_error(self, it: int, lr: float, spec: str, snapshot: Path | None,
                   snapshot_iter: int) -> NonFiniteLoss:
        """The message of a run stopped at iteration ``it``."""
        if self.last_finite is not None:
            last = (f"the last finite loss was {self.last_finite:.6g} at iteration "
                    f"{self.last_finite_iter}")
        else:
            last = "no finite loss was displayed before"
        kept = (f"the newest snapshot is {snapshot} (iteration {snapshot_iter}, before it)"
                if snapshot is not None else "no snapshot was written")
        return NonFiniteLoss(
            f"training stopped: the loss is NaN or infinite at iteration {it} (lr {lr:g}); "
            f"{last}; {kept}", Span(spec), hint=CAUSES)

    def warn(self, it: int) -> None:
        """--allow-nan: say it once."""
        if not self.warned:
            self.warned = True
            log.warning(f"netdsl: the loss is NaN or infinite at iteration {it}; carrying on "
                        "(--allow-nan)")


def check_loss(trainer: Trainer, it: int, lr: float, shown: float | None,
               reporter: Reporter, weights: bool = False) -> None:
    """Stop ``trainer`` on a NaN or infinite loss since the last check, unless
    ``--allow-nan``: at display (``shown``: the displayed loss) and before a snapshot
    (``weights``: the weights too must be finite), where the loop syncs anyway."""
    guard = trainer.guard
    if shown is not None:
        guard.displayed(it, shown)
    world = trainer.world
    bad = guard.tripped(world.any if world is not None else None)
    if weights and not bad:
        bad = not weights_finite(trainer.net.parameters())
        if world is not None:
            bad = world.any(bad)
    if not bad:
        return
    if guard.allow:
        guard.warn(it)
        return
    reporter.event({"event": "nonfinite", "iter": it, "lr": lr,
                    "last_finite_loss": guard.last_finite,
                    "path": str(trainer.last_snapshot) if trainer.last_snapshot else None})
    raise guard.stop_error(it, lr, trainer.spec_path, trainer.last_snapshot,
                           trainer._snapshot_iter)


def weights_finite(params: Iterable[torch.Tensor]) -> bool:
    """Whether every weight is finite (one sync; before a snapshot only)."""
    flags = [torch.isfinite(p.detach()).all().to("cpu") for p in params if p.numel()]
    return bool(torch.stack(flags).all()) if flags else True
