"""``netdsl train``: Caffe's ``Solver::Solve``/``Step`` over a compiled net.

One iteration, as ``Solver::Step`` does it:

1. test first, if ``test_interval`` divides the iteration (at 0 only with
   ``test_initialization``): ``test_iter`` batches through the TEST-phase net, each
   scalar output blob averaged over them (``Solver::Test``); the ``plateau`` policy then
   sees ``plateau_metric``;
2. forward and backward ``iter_size`` batches, the gradients accumulating. The loss is
   *not* divided by ``iter_size``: :meth:`CaffeOptimizer.step` divides the gradients, as
   Caffe's ``Normalize`` does (the displayed loss is the mean over the batches);
3. at ``display`` iterations, report the loss averaged over the last ``average_loss``
   iterations and the train net's output blobs;
4. apply the update at ``learning_rate(cfg, it)`` (clipping, ``iter_size``, weight decay,
   momentum: :class:`CaffeOptimizer`), then count the iteration and write a snapshot when
   ``snapshot`` divides it.

Training runs to ``max_iter`` (or ``max_epochs`` of the training data). At the end a
snapshot is written and the net tested once more; Caffe tests at the end only when
``test_interval`` divides ``max_iter``, netdsl always does, so ``train`` can return the final
test outputs (``test_iter`` batches, or the whole test set when ``test_iter`` is 0).

The TEST-phase net is compiled from the same spec (it may have other layers, Accuracy, and
other data) and holds the *same* tensors as the training net for every blob both have, as
Caffe's ``ShareTrainedLayersWith``: nothing is copied before a test. It runs in eval mode
(Dropout off, BatchNorm on its stored statistics). Periodic tests use one centre crop even
where the data asks for 10-crop testing; ``netdsl test`` does the 10 crops.

SIGINT and SIGTERM (Ctrl-C) set a flag: the current iteration finishes, a snapshot is
written and :func:`train` returns with ``status`` :data:`INTERRUPTED` (130), which the CLI
should exit with. A second signal stops at once (``KeyboardInterrupt``).

A snapshot holds the weights and everything the loop needs to continue exactly: iteration,
solver history, plateau state, the RNG states of python, numpy and torch, both data
loaders' positions and the loss-smoothing window. On the CPU, a run resumed from a
snapshot ends with the same weights, bit for bit, as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

import netdsl
from netdsl.diagnostics import DataError, NetdslError, Span, SpecError, UsageError
from netdsl.runtime.data import Feeder, Loader, build_loader
from netdsl.runtime.loading import data_config, feeds_of, layer_input_shapes
from netdsl.runtime.lr_policy import PlateauState, learning_rate, plateau_update
from netdsl.runtime.precision import DTYPES, LossScaler, effective_runtime
from netdsl.runtime.progress import Rate, Reporter, Window, make_reporter
from netdsl.runtime.signals import stop_on_signals
from netdsl.runtime.snapshot import (
    capture_rng_state,
    find_latest,
    read_snapshot,
    restore_rng_state,
    write_snapshot,
)
from netdsl.runtime.solver import CaffeOptimizer
from netdsl.sections import SolverConfig, phase_data, resolve_max_iter
from netdsl.weights import check_weights_fit, load_net_weights

__all__ = ["INTERRUPTED", "STATE_FORMAT", "Trainer", "train"]

#: Exit status of a run stopped by SIGINT/SIGTERM (after its snapshot), as a shell's 128 + 2.
INTERRUPTED = 130

#: The ``format`` of the training state inside a snapshot.
STATE_FORMAT = "netdsl.train/1"


def train(
    spec_path: str | os.PathLike[str],
    *,
    overrides: Mapping[str, str] | None = None,
    devices: Mapping[str, str] | str | None = None,
    data_path: str | None = None,
    resume: str | None = None,
    weights: str | None = None,
    fmt: str = "rich",
    tensorboard_dir: str | None = None,
    out: IO[str] | None = None,
    test_data_path: str | None = None,
    workers: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool | None = None,
    cuda_graphs: bool | None = None,
) -> dict[str, Any]:
    """Train the net of ``spec_path`` as its ``solver {}`` and ``data {}`` sections say.

    Args:
      spec_path: a ``.net`` file, a Caffe ``train_val.prototxt``, or a Caffe
        ``solver.prototxt`` (its ``net:`` is the net, relative to the current folder).
      overrides: the CLI's ``--set`` pairs (``{"solver.max_iter": "100", "width": "0.5"}``).
      devices: logical -> torch device (``{"gpu:0": "cuda:0"}``) or one device for all;
        default: the CUDA devices there are, else the CPU.
      data_path: ``--data``: where the data is (replaces the spec's path).
      resume: ``"latest"`` (the newest complete snapshot under ``snapshot_prefix``) or a
        snapshot file or prefix: continue exactly where it stopped.
      weights: fine-tune from a ``.safetensors`` or ``.caffemodel`` file: blobs are matched
        by ``<layer>.<blob>`` (layers the file lacks keep their fillers, as in Caffe), and
        every matched blob must have the net's shape.
      fmt: ``"rich"`` (progress bar), ``"json"`` (JSON lines) or ``"none"``.
      tensorboard_dir: also write the scalars as TensorBoard events there.
      out: where progress goes (default ``sys.stdout``).
      test_data_path: ``--test-data``: where the TEST data is (default: ``data_path``).
      workers: data worker processes (default: the data section's, else automatic).
      precision, channels_last, compile, cuda_graphs: over the spec's ``runtime {}``.

    Returns:
      The final test outputs by blob name (and ``loss``), plus ``iter`` (iterations
      done), ``seconds`` (wall time of the loop), ``snapshot`` (the last snapshot's weights
      file) and ``status``: 0, or :data:`INTERRUPTED` after Ctrl-C/SIGTERM.
    """
    if resume is not None and weights is not None:
        raise UsageError(
            "give --resume to continue a run or --weights to fine-tune, not both",
            None,
            "a snapshot already holds the weights",
        )
    reporter = make_reporter(fmt, out if out is not None else sys.stdout, tensorboard_dir)
    try:
        trainer = Trainer(spec_path, overrides=overrides, devices=devices, data_path=data_path,
                          test_data_path=test_data_path, workers=workers, precision=precision,
                          channels_last=channels_last, compile=compile, cuda_graphs=cuda_graphs)
        if weights is not None:
            trainer.load_weights(weights)
        if resume is not None:
            trainer.resume(resume)
        return trainer.run(reporter)
    finally:
        reporter.close()


# ------------------------------------------------------------------------------- trainer


class Trainer:
    """The training state of one spec: nets, loaders, solver, counters.

    ``train()`` is the usual entry point; the class is public so that tests and tools can
    run the loop piece by piece (and request a stop as the signal handler does).
    """

    def __init__(
        self,
        spec_path: str | os.PathLike[str],
        *,
        overrides: Mapping[str, str] | None = None,
        devices: Mapping[str, str] | str | None = None,
        data_path: str | None = None,
        test_data_path: str | None = None,
        workers: int | None = None,
        precision: str | None = None,
        channels_last: bool | None = None,
        compile: bool | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        self.spec_path = os.fspath(spec_path)
        setup = netdsl.load_training(spec_path, overrides)
        self.train_ir, self.test_ir = setup.train_net, setup.test_net
        self.name = setup.name
        cfg = setup.solver
        self.runtime = effective_runtime(
            self.train_ir.runtime, precision=precision, channels_last=channels_last,
            compile=compile, cuda_graphs=cuda_graphs)
        rt = self.runtime
        compile_args = {"dtype": DTYPES[rt.precision], "channels_last": rt.channels_last,
                        "torch_compile": rt.compile, "cuda_graphs": rt.cuda_graphs}

        # The fillers and the data order have their own generators, seeded from this; the
        # global ones (python, numpy, torch: Dropout) are seeded last, after everything
        # that might draw from them while setting up.
        if cfg.random_seed >= 0:
            self.seed = int(cfg.random_seed)
        else:
            self.seed = int.from_bytes(os.urandom(4), "little") >> 1

        self.train_data, train_span = data_config(self.train_ir, "train", data_path)
        self.testing = phase_data(self.test_ir) is not None
        if not self.testing and (cfg.test_interval > 0 or cfg.test_iter > 0):
            raise DataError(
                "the solver tests the net (test_interval/test_iter), but the TEST phase "
                "has no data",
                Span(self.train_ir.path),
                hint="add a data { } section, or a data layer with include { phase: TEST }",
            )

        self.net = netdsl.compile(
            self.train_ir, "train", devices, batch=self.train_data.batch_size,
            inputs=layer_input_shapes(self.train_ir, self.train_data), seed=self.seed,
            **compile_args)
        if not self.net.loss_weights:
            raise SpecError(
                f"net '{self.name}' has no loss to train: no layer has a loss_weight",
                Span(self.train_ir.path),
                hint="add a loss layer, e.g. layer { name: \"loss\" type: SoftmaxWithLoss "
                'bottom: ["fc8", "label"] }',
            )
        self.feeds = feeds_of(self.net)
        self.loader: Loader = build_loader(
            self.train_data, "train", self.feeds.shape, self.seed, span=train_span,
            workers=workers, device=self.net.input_device(self.feeds.data))
        self.feeder = Feeder(self.loader)
        self.test_data = None
        self.test_net: Any = None
        self.test_loader: Loader | None = None
        self._copied: list[str] = []
        if self.testing:
            test_data, test_span = data_config(self.test_ir, "test",
                                               test_data_path or data_path)
            self.test_data = dataclasses.replace(test_data, test_crops=1)
            self.test_net = netdsl.compile(
                self.test_ir, "test", devices, batch=self.test_data.batch_size,
                inputs=layer_input_shapes(self.test_ir, self.test_data), seed=self.seed,
                **compile_args)
            shared = set(self.test_net.share_weights_from(self.net))
            train_keys = set(self.net.blob_keys())
            self._copied = [k for k in self.test_net.blob_keys()
                            if k in train_keys and k not in shared]
            self.test_feeds = feeds_of(self.test_net)
            self.test_loader = build_loader(
                self.test_data, "test", self.test_feeds.shape, self.seed, span=test_span,
                workers=workers, device=self.test_net.input_device(self.test_feeds.data))

        iters_per_epoch = self.loader.epoch_size / cfg.iter_size
        self.cfg: SolverConfig = resolve_max_iter(cfg, iters_per_epoch)
        self._check_plateau_metric()
        self.opt = CaffeOptimizer(self.net.param_groups(), self.cfg)
        self.scaler = LossScaler() if rt.precision == "fp16" else None
        self.plateau: PlateauState = PlateauState.initial(self.cfg)
        self.window: deque[torch.Tensor] = deque(maxlen=self.cfg.average_loss)
        self.iteration = 0
        self.stop_signal: int | None = None
        self.last_snapshot: Path | None = None
        self._snapshot_iter = -1
        self.last_test: dict[str, float] = {}
        if cfg.random_seed >= 0:
            random.seed(self.seed)
            np.random.seed(self.seed % 2**32)
            torch.manual_seed(self.seed)

    # -------------------------------------------------------------- setup helpers

    def _check_plateau_metric(self) -> None:
        cfg = self.cfg
        if cfg.lr_policy != "plateau":
            return
        outputs = tuple(self.test_net.outputs) if self.test_net is not None else ()
        if cfg.plateau_metric not in outputs and cfg.plateau_metric != "loss":
            from netdsl.diagnostics import did_you_mean

            raise SpecError(
                f"plateau_metric '{cfg.plateau_metric}' is not an output of the TEST net "
                f"(its outputs: {', '.join(outputs) or 'none'})",
                self.train_ir.solver_spans.get("plateau_metric"),
                did_you_mean(cfg.plateau_metric, outputs),
            )

    def load_weights(self, path: str | os.PathLike[str]) -> list[str]:
        """Fine-tune: initialise from a weights file (see :func:`load_net_weights`)."""
        return load_net_weights(self.net, path, strict=False)

    def snapshot_prefix(self) -> str:
        """``snapshot_prefix``, relative to the current folder as in Caffe; default
        ``snapshots/<spec name>``."""
        return self.cfg.snapshot_prefix or os.path.join("snapshots", Path(self.spec_path).stem)

    # -------------------------------------------------------------- snapshots

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything but the weights that a snapshot holds: (tensors, JSON state)."""
        rng_json, rng_tensors = capture_rng_state()
        tensors = {**self.opt.state_tensors(), **self.plateau.as_tensors(), **rng_tensors}
        state = {
            "format": STATE_FORMAT,
            "iteration": self.iteration,
            "max_iter": self.cfg.max_iter,
            "solver_type": self.cfg.type.value,
            "rng": rng_json,
            "train_loader": self.feeder.state(),
            "test_loader": self.test_loader.state() if self.test_loader is not None else None,
            "loss_window": [float(t.item()) for t in self.window],
        }
        return tensors, state

    def snapshot(self) -> Path:
        """Write the snapshot of the current iteration; returns its weights file."""
        tensors, state = self.state()
        spath = write_snapshot(
            self.snapshot_prefix(), self.iteration, self.net.state_dict(), tensors, state,
            self.name,
        )
        wpath = Path(str(spath)[: -len(".solverstate.safetensors")] + ".safetensors")
        self.last_snapshot = wpath
        self._snapshot_iter = self.iteration
        return wpath

    def resume(self, where: str | os.PathLike[str]) -> Path:
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
            self._check_loader(self.loader, st["train_loader"])
            if self.test_loader is not None and st.get("test_loader") is not None:
                self._check_loader(self.test_loader, st["test_loader"])
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
        restore_rng_state(st.get("rng", {}), snap.solver_tensors)
        self.iteration = snap.iteration
        self.last_snapshot = snap.weights_path
        self._snapshot_iter = snap.iteration
        return snap.path

    @staticmethod
    def _check_loader(loader: Loader, saved: dict[str, Any]) -> None:
        """Whether ``loader.load_state(saved)`` would succeed, without moving ``loader``."""
        before = loader.state()
        loader.load_state(saved)
        loader.load_state(before)

    # -------------------------------------------------------------- the loop pieces

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current iteration, with a snapshot (what Ctrl-C does)."""
        self.stop_signal = signum

    def epoch(self) -> float:
        """Training epochs done so far, from the loader's position."""
        epoch, index = self.feeder.position
        return epoch + index / self.loader.num_samples

    def step(self) -> tuple[float, dict[str, torch.Tensor]]:
        """One solver iteration (``iter_size`` forward/backward passes and one update).

        Returns the rate used and the train net's outputs of the last pass.
        """
        cfg = self.cfg
        it = self.iteration
        lr = learning_rate(cfg, it, self.plateau)
        self.net.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        out: dict[str, torch.Tensor] = {}
        for _ in range(cfg.iter_size):
            x, y = self.feeder.next_batch()
            out = self.net(**self.feeds.inputs(x, y))
            loss = self.net.loss(out)
            (loss * self.scaler.scale if self.scaler is not None else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        self.window.append(total / cfg.iter_size if cfg.iter_size > 1 else total)
        if self.scaler is None or self.scaler.unscale(self.net.parameters()):
            self.opt.step(lr)
        self.iteration += 1
        return lr, out

    def smoothed_loss(self) -> float:
        """The loss averaged over the last ``average_loss`` iterations (Caffe's display)."""
        if not self.window:
            return math.nan
        return sum(float(t.item()) for t in self.window) / len(self.window)

    def test(self, batches: int, reporter: Reporter | None = None) -> dict[str, float]:
        """Run ``batches`` test batches; each scalar output blob averaged over them, and
        ``loss``: the loss-weighted sum of the loss blobs (``Solver::Test``)."""
        assert self.test_net is not None and self.test_loader is not None
        if self._copied:
            src = self.net.state_dict()
            self.test_net.load_state_dict({k: src[k] for k in self._copied}, strict=False)
        sums: dict[str, torch.Tensor] = {}
        if reporter is not None:
            reporter.test_begin(self.iteration, batches)
        with torch.no_grad():
            for _ in range(batches):
                x, y = self.test_loader.next_batch()
                out = self.test_net(**self.test_feeds.inputs(x, y))
                for k, v in out.items():
                    if v.numel() == 1:
                        v = v.detach().reshape(()).double()
                        sums[k] = v if k not in sums else sums[k] + v.to(sums[k].device)
                if reporter is not None:
                    reporter.test_advance()
        means = {k: float(v.item()) / batches for k, v in sums.items()}
        weights = self.test_net.loss_weights
        if any(k in means for k in weights):
            means["loss"] = sum(w * means[k] for k, w in weights.items() if k in means)
        return means

    def _record(self, it: int, phase: str, lr: float, loss: float | None,
                blobs: Mapping[str, float]) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "iter": it, "epoch": round(self.epoch(), 6), "phase": phase, "lr": lr,
        }
        if loss is not None:
            rec["loss"] = loss
        for k, v in blobs.items():
            if k not in rec and k not in ("event",):
                rec[k] = v
        return rec

    def _run_test(self, batches: int, reporter: Reporter) -> dict[str, float]:
        means = self.test(batches, reporter)
        lr = learning_rate(self.cfg, self.iteration, self.plateau)
        reporter.test(self._record(self.iteration, "test", lr, means.get("loss"), means))
        self.last_test = means
        if self.cfg.lr_policy == "plateau":
            metric = means.get(self.cfg.plateau_metric, math.nan)
            self.plateau = plateau_update(self.cfg, self.plateau, metric)
        return means

    # -------------------------------------------------------------- the loop

    def run(self, reporter: Reporter | None = None) -> dict[str, Any]:
        """Train from the current iteration to ``max_iter`` (see the module docstring)."""
        reporter = reporter if reporter is not None else Reporter()
        try:
            return self._run(reporter)
        finally:
            self.feeder.close()

    def run_info(self) -> dict[str, Any]:
        """How this run uses the hardware, as the start and done records say it."""
        rt = self.runtime
        return {"device": str(self.loader.device or "cpu"), "workers": self.loader.workers,
                "precision": rt.precision, "channels_last": rt.channels_last,
                "compile": rt.compile, "cuda_graphs": rt.cuda_graphs}

    def _run(self, reporter: Reporter) -> dict[str, Any]:
        cfg = self.cfg
        batch = self.train_data.batch_size
        reporter.begin(
            net=self.name, start_iter=self.iteration, max_iter=cfg.max_iter,
            batch=batch * cfg.iter_size, run=self.run_info(),
        )
        rate = Rate()
        window = Window(self.feeder)
        last_test_at = -1
        t0 = time.perf_counter()
        with stop_on_signals(self.request_stop, lambda: self.stop_signal is not None):
            while self.iteration < cfg.max_iter:
                it = self.iteration
                if (
                    self.testing and cfg.test_interval > 0 and it % cfg.test_interval == 0
                    and (it > 0 or cfg.test_initialization)
                ):
                    self._run_test(cfg.test_iter, reporter)
                    last_test_at = it
                lr, out = self.step()
                window.add(batch * cfg.iter_size)
                if cfg.display > 0 and it % cfg.display == 0:
                    blobs = {
                        k: float(v.detach().float().item())
                        for k, v in out.items() if v.numel() == 1
                    }
                    # Caffe prints the iteration before counting it.
                    record = self._record(it, "train", lr, self.smoothed_loss(), blobs)
                    reporter.train({**record, **window.read()})
                reporter.advance(self.iteration, rate.add(batch * cfg.iter_size),
                                 window.data_wait)
                if cfg.snapshot > 0 and self.iteration % cfg.snapshot == 0:
                    self._snapshot(reporter)
                if self.stop_signal is not None:
                    break
        seconds = time.perf_counter() - t0
        if self._snapshot_iter != self.iteration:
            self._snapshot(reporter)
        result: dict[str, Any]
        if self.stop_signal is not None:
            result = {**self.last_test, "iter": self.iteration, "seconds": seconds}
            result.update(snapshot=str(self.last_snapshot), status=INTERRUPTED)
            reporter.event({"event": "interrupted", "iter": self.iteration,
                            "path": str(self.last_snapshot), "seconds": seconds})
            return result
        if self.testing and last_test_at != self.iteration:
            assert self.test_loader is not None
            self._run_test(cfg.test_iter or self.test_loader.epoch_size, reporter)
        seconds = time.perf_counter() - t0
        final = dict(self.last_test)
        reporter.event({"event": "done", "iter": self.iteration, **final, "seconds": seconds,
                        **self.run_info()})
        return {**final, "iter": self.iteration, "seconds": seconds,
                "snapshot": str(self.last_snapshot), "status": 0}

    def _snapshot(self, reporter: Reporter) -> None:
        path = self.snapshot()
        reporter.event({"event": "snapshot", "iter": self.iteration, "path": str(path)})
