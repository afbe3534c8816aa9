"""Snapshots of a training run and resuming from them: what a snapshot holds besides the
weights (iteration, solver history, plateau state, every process's RNG states, both data
loaders' positions, the loss window), written atomically by the first process, and checked
in full before a resume changes anything."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from netdsl.diagnostics import DataError, NetdslError, Span
from netdsl.runtime.data import Loader
from netdsl.runtime.lr_policy import PlateauState
from netdsl.runtime.snapshot import (
    capture_rng_state,
    find_latest,
    read_snapshot,
    restore_rng_state,
    write_snapshot,
)
from netdsl.runtime.solver import CaffeOptimizer
from netdsl.weights import check_weights_fit

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

def resume_from(self: Trainer, where: str | os.PathLike[str]) -> Path:
    """Continue from a snapshot: ``"latest"`` (under ``snapshot_prefix``), a prefix or
    either file of a snapshot. Everything is checked before anything changes."""
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
    snap = read_snapshot(target, net_name=self.name)
    where_span = Span(str(snap.path))
    expected = {k: tuple(v.shape) for k, v in self.net.state_dict().items()}
    check_weights_fit(
        expected, {k: tuple(v.shape) for k, v in snap.weights.items()},
        path=snap.weights_path,
    )
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
        opt_tensors = {
            k: v for k, v in snap.solver_tensors.items()
            if k == "iter" or k.startswith("history.")
        }
        probe = CaffeOptimizer(self.net.param_groups(), self.cfg)
        probe.load_state_tensors(opt_tensors)  # checks keys and shapes, changes nothing
        plateau = PlateauState.from_tensors(snap.solver_tensors)
        window = [float(v) for v in st["loss_window"]]
        self.feeder.close()  # the loader must not run ahead while it is checked
        _check_loader(self.loader, st["train_loader"])
        if self.test_loader is not None and st.get("test_loader") is not None:
            _check_loader(self.test_loader, st["test_loader"])
    except NetdslError as e:
        raise DataError(
            f"cannot resume from this snapshot: {e.message}", where_span, e.hint
        ) from None
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"cannot resume from this snapshot: its training state is incomplete ({e})",
            where_span,
        ) from None
    # Checked: now change things.
    self.net.load_state_dict(snap.weights)
    self.opt.load_state_tensors(opt_tensors)
    self.plateau = plateau
    self.window = deque(
        (torch.tensor(v, dtype=torch.float32) for v in window), maxlen=self.cfg.average_loss
    )
    self.feeder.load_state(st["train_loader"])
    if self.test_loader is not None and st.get("test_loader") is not None:
        self.test_loader.load_state(st["test_loader"])
    rng_state, rng_tensors = st.get("rng", {}), snap.solver_tensors
    if self.world is not None and st.get("rng_ranks"):
        r = self.world.rank
        rng_state = st["rng_ranks"][r]
        prefix = f"rng.rank{r}."
        rng_tensors = {"rng." + k[len(prefix):]: v for k, v in snap.solver_tensors.items()
                       if k.startswith(prefix)}
    restore_rng_state(rng_state, rng_tensors)
    self.iteration = snap.iteration
    self.last_snapshot = snap.weights_path
    self._snapshot_iter = snap.iteration
    return snap.path

def _check_loader(loader: Loader, saved: dict[str, Any]) -> None:
    """Whether ``loader.load_state(saved)`` would succeed, without moving ``loader``."""
    before = loader.state()
    loader.load_state(saved)
    loader.load_state(before)
