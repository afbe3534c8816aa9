"""Snapshots of a training run and resuming from them: what a snapshot holds besides the
weights (iteration, solver history, plateau state, every process's RNG states, both data
loaders' positions, the loss window), written atomically by the first process, and checked
in full before a resume changes anything: :func:`resume_from` checks (``_check``), then sets
(``_apply``)."""

from __future__ import annotations

import copy
import math
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from netdsl.diagnostics import DataError, NetdslError, Span
from netdsl.runtime.data import Loader
from netdsl.runtime.lr_policy import PlateauState
from netdsl.runtime.snapshot import (
    Snapshot,
    capture_rng_state,
    check_rng_state,
    find_latest,
    read_snapshot,
    remove_stale_temporaries,
    restore_rng_state,
    write_snapshot,
)
from netdsl.runtime.solver import ITER_KEY, CaffeOptimizer
from netdsl.weights import check_weight_values, check_weights_fit

if TYPE_CHECKING:
    from netdsl.runtime.train import Trainer

__all__ = ["STATE_FORMAT", "resume_from", "trainer_state", "write_snapshot_of"]

#: The ``format`` of the training state inside a snapshot.
STATE_FORMAT = "netdsl.train/1"


def trainer_state(self: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything but the weights that a snapshot holds: (tensors, JSON state)."""
    rng_json, rng_tensors = capture_rng_state()
    tensors = {**self.opt.state_tensors(), **self.plateau.as_tensors(), **rng_tensors}
    ranks: list[dict[str, Any]] = []
    if self.world is not None:  # every process's RNGs (dropout differs between them)
        everyone = self.world.gather((rng_json, {k: v.cpu() for k, v in
                                                 rng_tensors.items()}))
        for r, (j, t) in enumerate(everyone):
            ranks.append(j)
            tensors.update({f"rng.rank{r}.{k[4:]}": v for k, v in t.items()})
    state = {
        "format": STATE_FORMAT,
        "iteration": self.iteration,
        "max_iter": self.cfg.max_iter,
        "solver_type": self.cfg.type.value,
        "world": self.world.size if self.world is not None else 1,
        "rng": rng_json,
        "rng_ranks": ranks,
        "train_loader": self.feeder.state(),
        "test_loader": self.test_loader.state() if self.test_loader is not None else None,
        "loss_window": [float(t.item()) for t in self.window],
    }
    return tensors, state

def write_snapshot_of(self: Trainer) -> Path:
    """Write the snapshot of the current iteration; returns its weights file. With
    several processes every one takes part (their RNG states are gathered) and the
    first writes."""
    tensors, state = trainer_state(self)
    if self.world is None or self.world.main:
        spath = write_snapshot(
            self.snapshot_prefix(), self.iteration, self.net.state_dict(), tensors, state,
            self.name,
        )
    else:
        spath = Path(f"{self.snapshot_prefix()}_iter_{self.iteration}"
                     ".solverstate.safetensors")
    if self.world is not None:
        self.world.any(False)  # the others wait for the files to be complete
    wpath = Path(str(spath)[: -len(".solverstate.safetensors")] + ".safetensors")
    self.last_snapshot = wpath
    self._snapshot_iter = self.iteration
    return wpath


_HINT = ("the snapshot is damaged, or was written by another program or version of netdsl; "
         "resume from an earlier snapshot")


@dataclass
class _Checked:
    """What a resume sets, every part checked: applying it cannot fail halfway."""

    snap: Snapshot
    opt_tensors: dict[str, torch.Tensor]
    plateau: PlateauState
    window: list[float]
    train_loader: dict[str, Any]
    test_loader: dict[str, Any] | None
    rng_state: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]


def resume_from(self: Trainer, where: str | os.PathLike[str], *,
                allow_nonfinite: bool = False) -> Path:
    """Continue from a snapshot: ``"latest"`` (under ``snapshot_prefix``), a prefix or
    either file of a snapshot. Everything is checked before anything changes: the files'
    checksums, the weights' shapes, kinds and (unless ``allow_nonfinite``) finiteness, the
    solver history against the parameters, the iteration, the data positions against the
    data and every RNG state on a fresh generator; only then are the net, the optimizer,
    the loaders and the RNGs set."""
    if self.world is None or self.world.main:
        remove_stale_temporaries(self.snapshot_prefix())
    target: str | os.PathLike[str] = where
    if os.fspath(where) == "latest":
        latest = find_latest(self.snapshot_prefix())
        if latest is None:
            raise DataError(
                f"no snapshot to resume from: none found with prefix "
                f"'{self.snapshot_prefix()}'",
                None,
                "snapshots are written every `snapshot` iterations, at the end and on "
                "Ctrl-C; give --resume PATH to name one",
            )
        target = latest
    checked = _check(self, read_snapshot(target, net_name=self.name), allow_nonfinite)
    _apply(self, checked)
    return checked.snap.path


def _check(self: Trainer, snap: Snapshot, allow_nonfinite: bool) -> _Checked:
    """Every check of a resume, changing nothing; DataError names the file at fault."""
    net_state = self.net.state_dict()
    check_weights_fit(
        {k: tuple(v.shape) for k, v in net_state.items()},
        {k: tuple(v.shape) for k, v in snap.weights.items()},
        path=snap.weights_path,
    )
    check_weight_values(snap.weights, {k: v.dtype for k, v in net_state.items()},
                        path=snap.weights_path, allow_nonfinite=allow_nonfinite,
                        what="the snapshot's weights")
    st = snap.state
    try:
        if st.get("format") != STATE_FORMAT:
            raise DataError(f"unknown training state format {st.get('format')!r}")
        world = self.world.size if self.world is not None else 1
        if int(st.get("world", 1)) != world:
            raise DataError(
                f"the snapshot was written by a run of {st.get('world', 1)} process(es); "
                f"this run has {world}",
                hint=f"resume with --nproc {st.get('world', 1)}: each process's share of "
                "the data and its RNG state depend on it")
        if st.get("solver_type") != self.cfg.type.value:
            raise DataError(
                f"the snapshot was trained with solver {st.get('solver_type')}, this "
                f"spec uses {self.cfg.type.value}"
            )
        if st.get("iteration", snap.iteration) != snap.iteration:
            raise DataError(f"its training state is of iteration {st.get('iteration')!r}, "
                            f"its file of iteration {snap.iteration}")
        opt_tensors = {
            k: v for k, v in snap.solver_tensors.items()
            if k == ITER_KEY or k.startswith("history.")
        }
        _check_history(self.opt, opt_tensors, snap.iteration, allow_nonfinite)
        plateau = _plateau(snap.solver_tensors)
        window = _loss_window(st["loss_window"], allow_nonfinite)
        _check_loader(self.loader, st["train_loader"], "training")
        test_state = st.get("test_loader") if self.test_loader is not None else None
        if self.test_loader is not None and test_state is not None:
            _check_loader(self.test_loader, test_state, "test")
        rng_state, rng_tensors = _rng_of(self, st, snap.solver_tensors)
    except NetdslError as e:
        raise DataError(f"cannot resume from this snapshot: {e.message}", Span(str(snap.path)),
                        e.hint or _HINT, e.notes) from None
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"cannot resume from this snapshot: its training state is incomplete "
            f"({type(e).__name__}: {e})",
            Span(str(snap.path)),
            _HINT,
        ) from None
    return _Checked(snap, opt_tensors, plateau, window, st["train_loader"], test_state,
                    rng_state, rng_tensors)


def _apply(self: Trainer, c: _Checked) -> None:
    """Set what :func:`_check` checked."""
    self.net.load_state_dict(c.snap.weights)
    self.opt.load_state_tensors(c.opt_tensors)
    self.plateau = c.plateau
    self.window = deque(
        (torch.tensor(v, dtype=torch.float32) for v in c.window), maxlen=self.cfg.average_loss
    )
    self.feeder.load_state(c.train_loader)  # drops what the feeder made ahead
    if self.test_loader is not None and c.test_loader is not None:
        self.test_loader.load_state(c.test_loader)
    restore_rng_state(c.rng_state, c.rng_tensors)
    self.iteration = c.snap.iteration
    self.last_snapshot = c.snap.weights_path
    self._snapshot_iter = c.snap.iteration


def _check_history(opt: CaffeOptimizer, d: Mapping[str, torch.Tensor], iteration: int,
                   allow_nonfinite: bool) -> None:
    """The solver history fits the parameters: the keys this solver type has, each
    tensor of its parameter's shape and kind, finite; ``iter`` an integer in
    0..``iteration`` (fp16 runs skip the updates of overflowing steps)."""
    keyed = opt._keyed_params()  # (key, parameter, slot), as load_state_tensors reads them
    want = {k for k, _, _ in keyed} | {ITER_KEY}
    missing, extra = sorted(want - set(d)), sorted(set(d) - want)
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"]
                 if missing else [])
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
        raise DataError(f"its solver history does not fit this net and solver: "
                        f"{'; '.join(parts)}",
                        hint=f"this solver is {opt.cfg.type.value}; was the snapshot written "
                        "by another solver type or another net?")
    it = d[ITER_KEY]
    if it.numel() != 1 or it.dtype.is_floating_point or it.dtype.is_complex or \
            it.dtype == torch.bool:
        raise DataError(f"its solver's '{ITER_KEY}' should be an integer scalar, it is "
                        f"{str(it.dtype)[6:]} of shape {tuple(it.shape)}")
    if not 0 <= int(it.item()) <= iteration:
        raise DataError(f"its solver has taken {int(it.item())} steps, not in 0..{iteration}")
    for key, p, _ in keyed:
        if tuple(d[key].shape) != tuple(p.shape):
            raise DataError(f"its solver history '{key}' has shape {tuple(d[key].shape)}, but "
                            f"its parameter has shape {tuple(p.shape)}")
    check_weight_values(d, {k: p.dtype for k, p, _ in keyed}, allow_nonfinite=allow_nonfinite,
                        what="its solver history")


def _plateau(tensors: Mapping[str, torch.Tensor]) -> PlateauState:
    plateau = PlateauState.from_tensors(tensors)
    for key in ("plateau.bad_tests", "plateau.drops"):
        t = tensors[key]
        if t.dtype.is_floating_point or t.dtype == torch.bool or int(t.item()) < 0:
            raise DataError(f"its '{key}' should be a count (an integer >= 0), it is "
                            f"{t.item()!r} ({str(t.dtype)[6:]})")
    return plateau


def _loss_window(raw: Any, allow_nonfinite: bool) -> list[float]:
    if not isinstance(raw, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in raw):
        raise DataError("its loss window is not a list of numbers")
    window = [float(v) for v in raw]
    if not allow_nonfinite and not all(math.isfinite(v) for v in window):
        raise DataError("its recent losses include NaN or infinite values: the run had "
                        "diverged", hint="resume from an earlier snapshot; --allow-nonfinite "
                        "resumes anyway")
    return window


def _check_loader(loader: Loader, saved: Any, which: str) -> None:
    """Whether ``loader.load_state(saved)`` would succeed, tried on a shallow copy: its
    load_state only rebinds the copy's own attributes (position, a new generator, its
    batch iterator), so the loader itself is not touched."""
    if not isinstance(saved, dict):
        raise DataError(f"its {which} data position is not an object")
    for key in ("epoch", "index"):
        v = saved.get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            raise DataError(f"its {which} data position has {key} {v!r}, not an integer")
    epoch, index = saved["epoch"], saved["index"]
    if epoch < 0 or not 0 <= index < loader.num_samples:
        raise DataError(f"its {which} data position (epoch {epoch}, sample {index}) is outside "
                        f"the data, which has {loader.num_samples} samples")
    copy.copy(loader).load_state(saved)


def _rng_of(self: Trainer, st: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> (
        tuple[dict[str, Any], dict[str, torch.Tensor]]):
    """This process's RNG states from the snapshot, every process's checked."""
    ranks = st.get("rng_ranks")
    if self.world is None or not ranks:
        state = st.get("rng", {})
        if not isinstance(state, dict):
            raise DataError("its RNG state is not an object")
        check_rng_state(state, tensors)
        return state, dict(tensors)
    if not isinstance(ranks, list) or len(ranks) != self.world.size:
        raise DataError(f"it holds the RNG states of {len(ranks) if isinstance(ranks, list) else 0}"
                        f" processes; this run has {self.world.size}")
    mine: tuple[dict[str, Any], dict[str, torch.Tensor]] = ({}, {})
    for r, state in enumerate(ranks):
        prefix = f"rng.rank{r}."
        own = {"rng." + k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not isinstance(state, dict):
            raise DataError(f"the RNG state of process {r} is not an object")
        check_rng_state(state, own)
        if r == self.world.rank:
            mine = (state, own)
    return mine
