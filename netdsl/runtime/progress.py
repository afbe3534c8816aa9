"""How training reports itself: a rich progress bar, JSON lines, TensorBoard scalars.

The training loop talks to one :class:`Reporter`; :func:`make_reporter` builds it for a
format:

* ``"rich"``: a live progress bar (iterations, ETA, images/s, smoothed loss, lr) with
  Caffe-like log lines printed above it at every display and test;
* ``"json"``: one JSON object per line, flushed at once, for scripts::

      {"event": "start", "net": "AlexNet", "iter": 0, "max_iter": 690, "batch": 64,
       "device": "cuda:0", "workers": 7, "precision": "bf16", "channels_last": true, ...}
      {"iter": 20, "epoch": 0.89, "phase": "train", "lr": 0.01, "loss": 2.29,
       "images_per_s": 5321.7, "data_wait": 0.03, ...}
      {"iter": 100, "epoch": 4.45, "phase": "test", "lr": 0.01, "loss": 0.31, "accuracy": 0.9}
      {"event": "snapshot", "iter": 100, "path": "snapshots/x_iter_100.safetensors"}
      {"event": "done", "iter": 690, "accuracy": 0.97, "loss": 0.1, "seconds": 41.2}

  The start line says how the run uses the hardware (and the done line repeats it). A
  train line carries every scalar output blob of the train net by name (the smoothed
  objective is ``loss``, so an output blob named ``loss`` appears as that), the images
  per second and ``data_wait``: the share of the time since the last display spent
  waiting for data (near 1: the run is input-bound; add workers); a test line
  carries each test output blob averaged over the test batches, and ``loss``, the
  loss-weighted sum of the loss blobs. Non-finite numbers are written as ``null``;
* ``"none"``: nothing (library use).

``--tensorboard DIR`` adds a :class:`TensorBoardReporter` writing the same scalars
(``train/<name>``, ``test/<name>``) with the iteration as the step.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from netdsl.diagnostics import DataError, UsageError
from netdsl.files import writable_folder

__all__ = [
    "Bar",
    "FORMATS",
    "JsonReporter",
    "MultiReporter",
    "Reporter",
    "Rate",
    "RichReporter",
    "TensorBoardReporter",
    "Window",
    "json_line",
    "make_reporter",
]

FORMATS = ("rich", "json", "none")
_RESERVED = ("iter", "epoch", "phase", "lr", "event", "images_per_s", "data_wait")


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def json_line(record: Mapping[str, Any]) -> str:
    """One record as compact, strictly valid JSON (NaN and infinities become ``null``, at
    any depth)."""
    return json.dumps({k: _finite(v) for k, v in record.items()}, allow_nan=False)


def _number(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.4e}"
    return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:.4f}"


class Reporter:
    """Receives the training loop's events; every method is optional (does nothing here)."""

    def begin(self, *, net: str, start_iter: int, max_iter: int, batch: int,
              run: Mapping[str, Any] | None = None) -> None:
        """Training is about to run iterations ``start_iter .. max_iter - 1``; ``run`` says
        how (device, workers, precision, memory format, compile)."""

    def advance(self, iteration: int, images_per_s: float | None,
                data_wait: float | None = None) -> None:
        """Iteration ``iteration - 1`` is done (called every iteration: keep it cheap)."""

    def train(self, record: Mapping[str, Any]) -> None:
        """A display line: ``iter``, ``epoch``, ``phase``, ``lr``, ``loss``, output blobs."""

    def test_begin(self, iteration: int, batches: int) -> None:
        """A test pass of ``batches`` batches starts."""

    def test_advance(self) -> None:
        """One test batch is done."""

    def test(self, record: Mapping[str, Any]) -> None:
        """A test result: ``iter``, ``epoch``, ``phase``, ``lr``, ``loss``, output blobs."""

    def event(self, record: Mapping[str, Any]) -> None:
        """A snapshot, the end of training or an interruption (``event`` says which)."""

    def close(self) -> None:
        """Training is over (also on errors): release the terminal or files."""


class MultiReporter(Reporter):
    """Fans every event out to several reporters."""

    def __init__(self, reporters: Sequence[Reporter]) -> None:
        self.reporters = tuple(reporters)

    def begin(self, **kw: Any) -> None:
        for r in self.reporters:
            r.begin(**kw)

    def advance(self, iteration: int, images_per_s: float | None,
                data_wait: float | None = None) -> None:
        for r in self.reporters:
            r.advance(iteration, images_per_s, data_wait)

    def train(self, record: Mapping[str, Any]) -> None:
        for r in self.reporters:
            r.train(record)

    def test_begin(self, iteration: int, batches: int) -> None:
        for r in self.reporters:
            r.test_begin(iteration, batches)

    def test_advance(self) -> None:
        for r in self.reporters:
            r.test_advance()

    def test(self, record: Mapping[str, Any]) -> None:
        for r in self.reporters:
            r.test(record)

    def event(self, record: Mapping[str, Any]) -> None:
        for r in self.reporters:
            r.event(record)

    def close(self) -> None:
        for r in self.reporters:
            r.close()


class JsonReporter(Reporter):
    """One JSON object per line on ``out``, flushed per line."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def _write(self, record: Mapping[str, Any]) -> None:
        self.out.write(json_line(record) + "\n")
        self.out.flush()

    def begin(self, *, net: str, start_iter: int, max_iter: int, batch: int,
              run: Mapping[str, Any] | None = None) -> None:
        self._write({"event": "start", "net": net, "iter": start_iter, "max_iter": max_iter,
                     "batch": batch, **(run or {})})

    def train(self, record: Mapping[str, Any]) -> None:
        self._write(record)

    def test(self, record: Mapping[str, Any]) -> None:
        self._write(record)

    def event(self, record: Mapping[str, Any]) -> None:
        self._write(record)


def is_terminal(out: IO[str]) -> bool:
    """Whether ``out`` is an interactive terminal (a log file or a pipe is not)."""
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


class RichReporter(Reporter):
    """A rich progress bar with Caffe-like log lines above it; on a stream that is not a
    terminal (a log file, a pipe), plain lines instead: the log lines unwrapped and a
    progress line at every tenth of the run, never a bar."""

    def __init__(self, out: IO[str], live: bool | None = None) -> None:
        from rich.console import Console

        self.live = is_terminal(out) if live is None else live
        self.console = Console(file=out, highlight=False, soft_wrap=not self.live)
        self.progress: Any = None
        self.task: Any = None
        self.test_task: Any = None
        self._loss: float | None = None
        self._lr: float | None = None
        self._span = (0, 0)  # start and end iteration, for the plain progress lines
        self._tenth = 0
        self._t0 = time.perf_counter()

    def begin(self, *, net: str, start_iter: int, max_iter: int, batch: int,
              run: Mapping[str, Any] | None = None) -> None:
        if not self.live:
            self._span = (start_iter, max_iter)
            self._tenth = 0
            self._t0 = time.perf_counter()
            self._announce(net, start_iter, max_iter, batch, run)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            net or "train", total=max_iter, completed=start_iter, stats=""
        )
        self._announce(net, start_iter, max_iter, batch, run)

    def _announce(self, net: str, start_iter: int, max_iter: int, batch: int,
                  run: Mapping[str, Any] | None) -> None:
        how = _describe_run(run or {})
        procs = int((run or {}).get("processes", 1))
        size = f"batch {batch}" if procs == 1 else f"batch {procs} x {batch} = {batch * procs}"
        self.console.print(
            f"Training {net} from iteration {start_iter} to {max_iter}, {size}"
            + (f" ({how})" if how else ""),
            markup=False,
        )

    def _stats(self, images_per_s: float | None, data_wait: float | None = None) -> str:
        parts = []
        if images_per_s is not None:
            parts.append(f"{images_per_s:,.0f} img/s")
        if data_wait is not None:
            parts.append(f"wait {data_wait:.0%}")
        if self._loss is not None:
            parts.append(f"loss {_number(self._loss)}")
        if self._lr is not None:
            parts.append(f"lr {_number(self._lr)}")
        return "  ".join(parts)

    def advance(self, iteration: int, images_per_s: float | None,
                data_wait: float | None = None) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task, completed=iteration, stats=self._stats(images_per_s, data_wait)
            )
        elif not self.live:
            stats = [f"{images_per_s:,.0f} img/s"] if images_per_s is not None else []
            if self._loss is not None:
                stats.append(f"loss {_number(self._loss)}")
            self._plain_progress(iteration, ", ".join(stats))

    def _plain_progress(self, iteration: int, stats: str) -> None:
        """``[ 30%] iteration 300 of 1000, 12 s, eta 28 s, 5,321 img/s, loss 0.31``, once
        a tenth of the run (the display lines carry the rest)."""
        start, end = self._span
        if end <= start:
            return
        tenth = min(10, (iteration - start) * 10 // (end - start))
        if tenth <= self._tenth:
            return
        self._tenth = tenth
        spent = time.perf_counter() - self._t0
        left = spent * (end - iteration) / max(iteration - start, 1)
        self.console.print(
            f"[{tenth * 10:3d}%] iteration {iteration} of {end}, {_duration(spent)}, eta "
            f"{_duration(left)}" + (f", {stats}" if stats else ""), markup=False)

    def train(self, record: Mapping[str, Any]) -> None:
        self._loss = record.get("loss")
        self._lr = record.get("lr")
        extra = "".join(
            f", {k} = {_number(v)}"
            for k, v in record.items()
            if k not in (*_RESERVED, "loss") and isinstance(v, float)
        )
        speed = ""
        if record.get("images_per_s") is not None:
            speed = f", {record['images_per_s']:,.0f} img/s"
        if record.get("data_wait") is not None:
            speed += f", data wait {record['data_wait']:.0%}"
        self.console.print(
            f"Iteration {record['iter']} (epoch {record['epoch']:.2f}), lr = "
            f"{_number(record['lr'])}, loss = {_number(record['loss'])}{extra}{speed}",
            markup=False,
        )

    def test_begin(self, iteration: int, batches: int) -> None:
        if self.progress is not None:
            self.test_task = self.progress.add_task("test", total=batches, stats="")

    def test_advance(self) -> None:
        if self.progress is not None and self.test_task is not None:
            self.progress.advance(self.test_task)

    def test(self, record: Mapping[str, Any]) -> None:
        if self.progress is not None and self.test_task is not None:
            self.progress.remove_task(self.test_task)
            self.test_task = None
        values = ", ".join(
            f"{k} = {_number(v)}"
            for k, v in record.items()
            if k not in _RESERVED and isinstance(v, float)
        )
        self.console.print(f"Test at iteration {record['iter']}: {values}", markup=False)

    def event(self, record: Mapping[str, Any]) -> None:
        kind = record.get("event")
        if kind == "snapshot":
            self.console.print(
                f"Snapshot at iteration {record['iter']}: {record['path']}", markup=False
            )
        elif kind == "interrupted":
            self.console.print(
                f"Interrupted at iteration {record['iter']}; resume with --resume "
                f"{record.get('path') or 'latest'}",
                markup=False,
            )
        elif kind == "done":
            values = ", ".join(
                f"{k} = {_number(v)}"
                for k, v in record.items()
                if k not in (*_RESERVED, "seconds") and isinstance(v, float)
            )
            self.console.print(
                f"Done: {record['iter']} iterations in {record['seconds']:.1f} s"
                + (f"; {values}" if values else ""),
                markup=False,
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class Bar:
    """Progress of a counted job (``test``, ``time``, ``features``): on a terminal, a
    transient rich bar with training's columns; in a log, a plain line at every tenth
    (``[ 40%] time 20 of 50, 3 s, eta 4 s``) once the job has run ``QUIET_S`` seconds;
    nothing for the JSON and silent formats."""

    QUIET_S = 2.0

    def __init__(self, stream: IO[str], fmt: str, what: str, total: int) -> None:
        self.progress: Any = None
        self.console: Any = None
        self.what, self.total, self.done, self._tenth = what, total, 0, 0
        self._t0 = time.perf_counter()
        if fmt != "rich":
            return
        from rich.console import Console

        console = Console(file=stream, highlight=False)
        if not is_terminal(stream):
            self.console = console
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(what, total=total)

    def advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.advance(self.task)
        elif self.console is not None and self.total > 0:
            tenth = min(10, self.done * 10 // self.total)
            spent = time.perf_counter() - self._t0
            if tenth > self._tenth and spent >= self.QUIET_S:  # a short job: no lines
                self._tenth = tenth
                left = spent * (self.total - self.done) / self.done
                self.console.print(f"[{tenth * 10:3d}%] {self.what} {self.done} of "
                                   f"{self.total}, {_duration(spent)}, eta "
                                   f"{_duration(left)}", markup=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 4 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _describe_run(run: Mapping[str, Any]) -> str:
    """``cuda:0, 7 workers, bf16, channels-last, compiled`` from a start record's fields."""
    parts = []
    if run.get("device"):
        parts.append(str(run["device"]))
    if "workers" in run:
        n = int(run["workers"])
        parts.append(f"{n} data worker{'s' if n != 1 else ''}")
    if run.get("precision"):
        parts.append(str(run["precision"]))
    for key, word in (("channels_last", "channels-last"), ("compile", "compiled"),
                      ("cuda_graphs", "CUDA graphs")):
        if run.get(key):
            parts.append(word)
    return ", ".join(parts)


class TensorBoardReporter(Reporter):
    """The train and test scalars as TensorBoard events in ``log_dir``."""

    def __init__(self, log_dir: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise DataError(
                "--tensorboard needs the tensorboard package, which is not installed",
                hint="pip install tensorboard",
            ) from None
        self.writer = SummaryWriter(log_dir=str(writable_folder(log_dir, "TensorBoard events")))

    def _scalars(self, phase: str, record: Mapping[str, Any]) -> None:
        step = int(record["iter"])
        for k, v in record.items():
            if k not in ("iter", "phase", "event") and isinstance(v, int | float):
                self.writer.add_scalar(f"{phase}/{k}", float(v), step)

    def train(self, record: Mapping[str, Any]) -> None:
        self._scalars("train", record)

    def test(self, record: Mapping[str, Any]) -> None:
        self._scalars("test", record)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def make_reporter(
    fmt: str, out: IO[str] | None = None, tensorboard_dir: str | None = None
) -> Reporter:
    """The reporter for ``fmt`` (``"rich"``, ``"json"`` or ``"none"``), plus TensorBoard."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format '{fmt}'", None, f"one of {', '.join(FORMATS)}")
    stream = out if out is not None else sys.stdout
    reporters: list[Reporter] = []
    if fmt == "rich":
        reporters.append(RichReporter(stream))
    elif fmt == "json":
        reporters.append(JsonReporter(stream))
    if tensorboard_dir:
        reporters.append(TensorBoardReporter(tensorboard_dir))
    if len(reporters) == 1:
        return reporters[0]
    return MultiReporter(reporters)


class Rate:
    """Images per second over a sliding couple of seconds."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.images = 0
        self.value: float | None = None

    def add(self, images: int) -> float | None:
        self.images += images
        now = time.perf_counter()
        dt = now - self.t0
        if dt >= 1.0:
            self.value = self.images / dt
            self.t0, self.images = now, 0
        return self.value


class Window:
    """Images per second and the share of time spent waiting for data, since the last
    display (reading them syncs nothing: the feeder times its own waits)."""

    def __init__(self, feeder: Any) -> None:
        self.feeder = feeder
        self.t0, self.wait0, self.images = time.perf_counter(), feeder.wait_seconds, 0
        self.data_wait: float | None = None

    def add(self, images: int) -> None:
        self.images += images

    def read(self) -> dict[str, float]:
        now, wait = time.perf_counter(), self.feeder.wait_seconds
        dt = max(now - self.t0, 1e-9)
        self.data_wait = min(1.0, (wait - self.wait0) / dt)
        out = {"images_per_s": round(self.images / dt, 1),
               "data_wait": round(self.data_wait, 4)}
        self.t0, self.wait0, self.images = now, wait, 0
        return out
