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
should exit with. A second signal stops at once (``KeyboardInterrupt``). SIGHUP writes a
snapshot after the current iteration and goes on (Caffe's ``--sighup_effect`` and
``--sigint_effect`` choose: ``runtime.signals``). A NaN or infinite loss stops the run at
the next display, the last good snapshot kept (``runtime.guard``).

A snapshot holds the weights and everything the loop needs to continue exactly: iteration,
solver history, plateau state, the RNG states of python, numpy and torch, both data
loaders' positions and the loss-smoothing window. On the CPU, a run resumed from a
snapshot ends with the same weights, bit for bit, as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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
from netdsl.files import writable_folder
from netdsl.runtime import distributed
from netdsl.runtime.checkpoint import (
    STATE_FORMAT,
    resume_from,
    trainer_state,
    write_snapshot_of,
)
from netdsl.runtime.data import Feeder, Loader, build_loader
from netdsl.runtime.guard import LossGuard, check_loss
from netdsl.runtime.loading import data_config, feeds_of, label_range, layer_input_shapes
from netdsl.runtime.lr_policy import PlateauState, learning_rate, plateau_update
from netdsl.runtime.precision import DTYPES, LossScaler, effective_runtime
from netdsl.runtime.progress import Rate, Reporter, Window, make_reporter
from netdsl.runtime.scoring import metric_blobs, scores_blob, solver_test
from netdsl.runtime.signals import signal_effects, stop_on_signals
from netdsl.runtime.snapshot import remove_stale_temporaries
from netdsl.runtime.solver import CaffeOptimizer
from netdsl.sections import SolverConfig, phase_data, resolve_max_iter
from netdsl.weights import load_net_weights

__all__ = ["INTERRUPTED", "STATE_FORMAT", "Trainer", "train"]

log = logging.getLogger("netdsl")

#: Exit status of a run stopped by SIGINT/SIGTERM (after its snapshot), as a shell's 128 + 2.
INTERRUPTED = 130



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
    sync_batchnorm: bool | None = None,
    on_bad_image: str = "skip",
    allow_nonfinite: bool = False,
    inputs: Mapping[str, tuple[int, ...]] | None = None,
    allow_nan: bool = False,
    sigint_effect: str = "stop",
    sighup_effect: str = "snapshot",
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
      precision, channels_last, compile, cuda_graphs, sync_batchnorm: over the spec's
        ``runtime {}``.
      on_bad_image: ``"skip"`` unreadable images (reported at the end) or ``"fail"``.
      allow_nonfinite: load NaN or infinite weights from ``weights`` or ``resume``.
      inputs: ``--input``: the ``(C, H, W)`` of a data layer's top the spec cannot know.
      allow_nan: carry on after a NaN or infinite loss (default: stop at the next display,
        :class:`~netdsl.runtime.guard.NonFiniteLoss`, the last good snapshot kept).
      sigint_effect, sighup_effect: what SIGINT and SIGHUP do (Caffe's flags): ``"stop"``
        (snapshot and stop), ``"snapshot"`` (snapshot and go on) or ``"none"``.

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
    effects = signal_effects(sigint_effect, sighup_effect)
    world = distributed.current(_uses_cuda(devices))
    main = world is None or world.main  # only the first process reports
    reporter = (make_reporter(fmt, out if out is not None else sys.stdout, tensorboard_dir)
                if main else Reporter())
    try:
        trainer = Trainer(spec_path, overrides=overrides, devices=devices, data_path=data_path,
                          test_data_path=test_data_path, workers=workers, precision=precision,
                          channels_last=channels_last, compile=compile, cuda_graphs=cuda_graphs,
                          sync_batchnorm=sync_batchnorm, on_bad_image=on_bad_image,
                          inputs=inputs)
        trainer.guard.allow = allow_nan
        trainer.signal_effects = effects
        if weights is not None:
            trainer.load_weights(weights, allow_nonfinite=allow_nonfinite)
        if resume is not None:
            trainer.resume(resume, allow_nonfinite=allow_nonfinite)
        return trainer.run(reporter)
    except NetdslError as e:
        raise (distributed.in_process(e, world) if world is not None else e) from None
    except Exception as e:
        if world is not None and distributed.peer_failed(e):
            raise distributed.PeerFailed(
                f"process {world.rank} of {world.size} stopped: another process of the run "
                "failed (its message is above)") from None
        raise
    finally:
        reporter.close()
        if world is not None:
            distributed.leave()


# ------------------------------------------------------------------------------- trainer


def _uses_cuda(devices: Mapping[str, str] | str | None) -> bool | None:
    """Whether the given devices are GPUs (``None``: not said; CUDA if there is one)."""
    if devices is None:
        return None
    names = [devices] if isinstance(devices, str) else list(devices.values())
    return any(str(d).startswith("cuda") for d in names)


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
        devices: Mapping[str, Any] | str | None = None,
        data_path: str | None = None,
        test_data_path: str | None = None,
        workers: int | None = None,
        precision: str | None = None,
        channels_last: bool | None = None,
        compile: bool | None = None,
        cuda_graphs: bool | None = None,
        sync_batchnorm: bool | None = None,
        on_bad_image: str = "skip",
        inputs: Mapping[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.spec_path = os.fspath(spec_path)
        setup = netdsl.load_training(spec_path, overrides)
        self.train_ir, self.test_ir = setup.train_net, setup.test_net
        self.name = setup.name
        cfg = setup.solver
        self.runtime = effective_runtime(
            self.train_ir.runtime, precision=precision, channels_last=channels_last,
            compile=compile, cuda_graphs=cuda_graphs, sync_batchnorm=sync_batchnorm)
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

        self.world = distributed.current(_uses_cuda(devices))
        if self.world is not None:
            if devices is None:  # this process's share of the machine's GPUs
                devices = distributed.local_devices(self.train_ir.devices,
                                                    self.world.local_rank)
            if self.world.size > 1 and cfg.random_seed < 0:
                raise SpecError(
                    "a run of several processes needs solver { random_seed } (every process "
                    "must draw the same data order)", self.train_ir.solver_spans.get(
                        "random_seed"), "e.g. --set solver.random_seed=1")
        rank, size = (self.world.rank, self.world.size) if self.world else (0, 1)

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
            inputs=layer_input_shapes(self.train_ir, self.train_data, inputs), seed=self.seed,
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
            workers=workers, device=self.net.input_device(self.feeds.data), rank=rank,
            world=size, labels=label_range(self.net, self.feeds.label),
            on_bad_image=on_bad_image)
        self.model: torch.nn.Module = self.net  # what the step runs: the net, or its DDP
        if self.world is not None:
            log.info(distributed.describe(self.world, self.net.devices,
                                          self.train_data.batch_size))
            synced = rt.sync_batchnorm and self.net.sync_batch_statistics(
                distributed.all_reduce_sum)
            if rt.sync_batchnorm and not synced and self.world.main:
                log.warning(f"netdsl: --sync-batchnorm: no layer of '{self.name}' normalises "
                            "with batch statistics")
            self.model = distributed.wrap(self.net, self.world)
        self.feeder = Feeder(self.loader)
        self.test_data = None
        self.test_net: Any = None
        self.test_loader: Loader | None = None
        self._copied: list[str] = []
        if self.testing:
            test_data, test_span = data_config(self.test_ir, "test",
                                               test_data_path or data_path)
            self.test_data = dataclasses.replace(test_data, test_crops=1)
            placed = {d: v for d, v in self.net.devices.items() if d in self.test_ir.devices}
            if devices is None and len(placed) == len(self.test_ir.devices):
                devices = placed  # where the TRAIN net went (and "placing" is logged once)
            self.test_net = netdsl.compile(
                self.test_ir, "test", devices, batch=self.test_data.batch_size,
                inputs=layer_input_shapes(self.test_ir, self.test_data, inputs),
                seed=self.seed,
                **compile_args)
            shared = set(self.test_net.share_weights_from(self.net))
            train_keys = set(self.net.blob_keys())
            self._copied = [k for k in self.test_net.blob_keys()
                            if k in train_keys and k not in shared]
            self.test_feeds = feeds_of(self.test_net)
            self.test_loader = build_loader(
                self.test_data, "test", self.test_feeds.shape, self.seed, span=test_span,
                workers=workers, device=self.test_net.input_device(self.test_feeds.data),
                rank=rank, world=size, labels=label_range(self.test_net, self.test_feeds.label),
                on_bad_image=on_bad_image)

        iters_per_epoch = self.loader.epoch_size / cfg.iter_size
        self.cfg: SolverConfig = resolve_max_iter(cfg, iters_per_epoch)
        self._check_plateau_metric()
        self.opt = CaffeOptimizer(self.net.param_groups(), self.cfg)
        self.scaler = LossScaler() if rt.precision == "fp16" else None
        self.plateau: PlateauState = PlateauState.initial(self.cfg)
        self.window: deque[torch.Tensor] = deque(maxlen=self.cfg.average_loss)
        self.iteration = 0
        self.stop_signal: int | None = None
        self.snapshot_requested = False  # SIGHUP: snapshot after this iteration, go on
        self.signal_effects = signal_effects()
        self.guard = LossGuard()
        self.test_metrics = metric_blobs(self.test_ir)
        self.test_scores = scores_blob(self.test_ir) if self.testing else None
        self.last_snapshot: Path | None = None
        self._snapshot_iter = -1
        self.last_test: dict[str, float] = {}
        if self.world is None or self.world.main:  # before any work: where snapshots go
            writable_folder(os.path.dirname(self.snapshot_prefix()), "snapshots")
            remove_stale_temporaries(self.snapshot_prefix())
        if cfg.random_seed >= 0:
            random.seed(self.seed)
            np.random.seed(self.seed % 2**32)
            torch.manual_seed(self.seed + rank)  # Caffe: seed + solver rank (Dropout)

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

    def load_weights(self, path: str | os.PathLike[str], *,
                     allow_nonfinite: bool = False) -> list[str]:
        """Fine-tune: initialise from a weights file (see :func:`load_net_weights`)."""
        return load_net_weights(self.net, path, strict=False, allow_nonfinite=allow_nonfinite)

    def snapshot_prefix(self) -> str:
        """``snapshot_prefix``, relative to the current folder as in Caffe; default
        ``snapshots/<spec name>``."""
        return self.cfg.snapshot_prefix or os.path.join("snapshots", Path(self.spec_path).stem)

    # -------------------------------------------------------------- snapshots

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything but the weights that a snapshot holds: (tensors, JSON state)."""
        return trainer_state(self)

    def snapshot(self) -> Path:
        """Write the snapshot of the current iteration; returns its weights file."""
        return write_snapshot_of(self)

    def resume(self, where: str | os.PathLike[str], *, allow_nonfinite: bool = False) -> Path:
        """Continue from a snapshot: ``"latest"`` (under ``snapshot_prefix``), a prefix or
        either file of a snapshot. Everything is checked before anything changes."""
        return resume_from(self, where, allow_nonfinite=allow_nonfinite)

    # -------------------------------------------------------------- the loop pieces

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current iteration, with a snapshot (what Ctrl-C does)."""
        self.stop_signal = signum

    def request_snapshot(self, signum: int = signal.SIGHUP) -> None:
        """Snapshot after the current iteration and go on (what SIGHUP does)."""
        self.snapshot_requested = True

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
        for k in range(cfg.iter_size):
            x, y = self.feeder.next_batch()
            # gradients are averaged over the processes once, at the last pass
            accumulate = self.world is not None and k < cfg.iter_size - 1
            with self.model.no_sync() if accumulate else contextlib.nullcontext():  # type: ignore[operator]  # DDP's
                out = self.model(**self.feeds.inputs(x, y))
                loss = self.net.loss(out)
                (loss * self.scaler.scale if self.scaler is not None else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        self.guard.add(total)
        self.window.append(total / cfg.iter_size if cfg.iter_size > 1 else total)
        if self.scaler is None or self.scaler.unscale(self.net.parameters()):
            self.opt.step(lr)
        self.iteration += 1
        return lr, out

    def smoothed_loss(self) -> float:
        """The loss averaged over the last ``average_loss`` iterations (Caffe's display),
        and over the processes."""
        if not self.window:
            return math.nan
        mean = sum(float(t.item()) for t in self.window) / len(self.window)
        if self.world is not None:
            mean = float(self.world.all_sum([mean])[0]) / self.world.size
        return mean

    def test(self, batches: int, reporter: Reporter | None = None) -> dict[str, float]:
        """Run ``batches`` test batches; each scalar output blob averaged over them, and
        ``loss``: the loss-weighted sum of the loss blobs (``Solver::Test``)."""
        return solver_test(self, batches, reporter)

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
        info: dict[str, Any] = {
            "device": str(self.loader.device or "cpu"), "workers": self.loader.workers,
            "precision": rt.precision, "channels_last": rt.channels_last,
            "compile": rt.compile, "cuda_graphs": rt.cuda_graphs}
        if self.world is not None:
            info.update(processes=self.world.size, backend=self.world.backend,
                        global_batch=self.loader.global_batch * self.cfg.iter_size,
                        sync_batchnorm=rt.sync_batchnorm)
        return info

    def _run(self, reporter: Reporter) -> dict[str, Any]:
        cfg = self.cfg
        batch = self.train_data.batch_size
        images = self.loader.global_batch * cfg.iter_size  # per iteration, all processes
        reporter.begin(
            net=self.name, start_iter=self.iteration, max_iter=cfg.max_iter,
            batch=batch * cfg.iter_size, run=self.run_info(),
        )
        rate = Rate()
        window = Window(self.feeder)
        last_test_at = -1
        t0 = time.perf_counter()
        with stop_on_signals(self.request_stop, lambda: self.stop_signal is not None,
                             repeat_aborts=self.world is None, effects=self.signal_effects,
                             request_snapshot=self.request_snapshot):
            while self.iteration < cfg.max_iter:
                it = self.iteration
                if (
                    self.testing and cfg.test_interval > 0 and it % cfg.test_interval == 0
                    and (it > 0 or cfg.test_initialization)
                ):
                    self._run_test(cfg.test_iter, reporter)
                    last_test_at = it
                lr, out = self.step()
                window.add(images)
                if cfg.display > 0 and it % cfg.display == 0:
                    blobs = {
                        k: float(v.detach().float().item())
                        for k, v in out.items() if v.numel() == 1
                    }
                    # Caffe prints the iteration before counting it.
                    shown = self.smoothed_loss()
                    record = self._record(it, "train", lr, shown, blobs)
                    reporter.train({**record, **window.read()})
                    check_loss(self, it, lr, shown, reporter)
                reporter.advance(self.iteration, rate.add(images),
                                 window.data_wait)
                if self.world is not None:  # a signal to any process: all act together
                    stop, snap = self.world.all_sum(
                        [float(self.stop_signal is not None), float(self.snapshot_requested)])
                    if stop > 0:
                        self.stop_signal = self.stop_signal or signal.SIGINT
                    self.snapshot_requested = bool(snap > 0)
                if ((cfg.snapshot > 0 and self.iteration % cfg.snapshot == 0)
                        or self.snapshot_requested):
                    self.snapshot_requested = False
                    self._snapshot(reporter, lr)
                if self.stop_signal is not None:
                    break
        seconds = time.perf_counter() - t0
        if self._snapshot_iter != self.iteration:
            self._snapshot(reporter, learning_rate(cfg, self.iteration, self.plateau))
        result: dict[str, Any]
        if self.stop_signal is not None:
            self._report_skipped()
            result = {**self.last_test, "iter": self.iteration, "seconds": seconds}
            result.update(snapshot=str(self.last_snapshot), status=INTERRUPTED)
            reporter.event({"event": "interrupted", "iter": self.iteration,
                            "path": str(self.last_snapshot), "seconds": seconds})
            return result
        if self.testing and last_test_at != self.iteration:
            assert self.test_loader is not None
            self._run_test(cfg.test_iter or self.test_loader.epoch_size, reporter)
        seconds = time.perf_counter() - t0
        skipped = self._report_skipped()
        final = dict(self.last_test)
        reporter.event({"event": "done", "iter": self.iteration, **final, "seconds": seconds,
                        **self.run_info(), **({"skipped_images": skipped} if skipped else {})})
        return {**final, "iter": self.iteration, "seconds": seconds,
                "snapshot": str(self.last_snapshot), "status": 0}

    def _report_skipped(self) -> int:
        """Log the unreadable images replaced (every process's); returns how many."""
        names = dict.fromkeys([*self.loader.skipped,
                               *(self.test_loader.skipped if self.test_loader else ())])
        if self.world is not None:
            names = dict.fromkeys(n for part in self.world.gather(list(names)) for n in part)
        if names and (self.world is None or self.world.main):
            shown = list(names)[:3]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            log.warning(f"netdsl: skipped {len(names)} unreadable image"
                        f"{'s' if len(names) != 1 else ''} (the next readable one took each "
                        f"one's place): {', '.join(shown)}{more}")
        return len(names)

    def _snapshot(self, reporter: Reporter, lr: float) -> None:
        check_loss(self, self.iteration, lr, None, reporter, weights=True)  # no NaN snapshot
        path = self.snapshot()
        reporter.event({"event": "snapshot", "iter": self.iteration, "path": str(path)})
