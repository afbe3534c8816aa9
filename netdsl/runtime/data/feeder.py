"""Batches made ready ahead of the training step: a background thread and, on CUDA, a side
stream, so the next batch is fetched, copied and augmented while the current step runs.

The thread takes the loader's batches in order, so what the trainer sees is exactly what
``loader.next_batch()`` would give; :meth:`Feeder.state` is the loader's position after
the last batch *handed out* (not after those made ahead), so a snapshot resumes at the
batch the trainer would have taken next. :attr:`Feeder.wait_seconds` counts the time the
trainer spent waiting for data: a run whose steps mostly wait is input-bound.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch

from .loader import Loader

__all__ = ["Feeder"]


@dataclass
class _Ready:
    x: torch.Tensor
    y: torch.Tensor
    event: torch.cuda.Event | None
    state: dict[str, Any]


@dataclass
class _Failed:
    error: BaseException


class Feeder:
    """``depth`` batches of ``loader`` made ahead on a thread (see the module docstring)."""

    def __init__(self, loader: Loader, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.loader, self.depth = loader, depth
        self.wait_seconds = 0.0
        self._state = loader.state()
        self._queue: queue.Queue[_Ready | _Failed] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        device = loader.device
        self._stream = (torch.cuda.Stream(device)  # type: ignore[no-untyped-call]  # untyped in torch
                        if device is not None and device.type == "cuda" else None)

    # -- position -------------------------------------------------------------------------

    @property
    def position(self) -> tuple[int, int]:
        """(epoch, index) after the last batch handed out."""
        return int(self._state["epoch"]), int(self._state["index"])

    def state(self) -> dict[str, Any]:
        """The loader's :meth:`~Loader.state` after the last batch handed out."""
        return self._state

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: what was made ahead is dropped."""
        self.close()
        self.loader.load_state(state)
        self._state = self.loader.state()

    # -- batches --------------------------------------------------------------------------

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(data, label)``, on the loader's device."""
        if self._thread is None:
            self._start()
        assert self._queue is not None
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        if item.event is not None:  # made on the side stream: the step's stream waits for it
            current = torch.cuda.current_stream(item.x.device)
            current.wait_event(item.event)
            item.x.record_stream(current)
            item.y.record_stream(current)
        self._state = item.state
        return item.x, item.y

    def _start(self) -> None:
        self.loader.start()  # fork the workers from this (the main) thread, not the feeder's
        self._stop.clear()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=self._run, name="netdsl-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        q, loader, stream = self._queue, self.loader, self._stream
        try:
            while not self._stop.is_set():
                raw = loader.next_raw()
                event = None
                if stream is not None:
                    with torch.cuda.stream(stream):
                        x, y = loader.finish(raw)
                        event = torch.cuda.Event()  # type: ignore[no-untyped-call]  # untyped in torch
                        event.record(stream)
                else:
                    x, y = loader.finish(raw)
                self._put(q, _Ready(x, y, event, loader.state()))
        except BaseException as e:  # noqa: BLE001  # handed to the trainer, which raises it
            self._put(q, _Failed(e))

    def _put(self, q: queue.Queue[_Ready | _Failed], item: _Ready | _Failed) -> None:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the thread; the batches made ahead are dropped (the position is kept)."""
        if self._thread is None:
            return
        self._stop.set()
        assert self._queue is not None
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()
        self._thread = None
        self._queue = None
        # the loader ran ahead of what was handed out: put it back where the trainer is
        self.loader.load_state(self._state)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001  # interpreter shutdown
            pass
