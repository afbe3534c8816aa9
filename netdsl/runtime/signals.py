"""Ctrl-C and SIGTERM during training: finish the iteration, snapshot, stop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[int], None], stopping: Callable[[], bool],
                    repeat_aborts: bool = True) -> Iterator[None]:
    """SIGINT/SIGTERM call ``request_stop(signum)`` (stop after the current iteration); a
    second one (``stopping()`` is already true) raises KeyboardInterrupt, unless
    ``repeat_aborts`` is false: a process of a launched run gets Ctrl-C twice, from the
    terminal and from the launcher, and must still snapshot (the launcher kills it if it
    takes too long). Only the main thread can install handlers: elsewhere this does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stopping() and repeat_aborts:
            for sig, old in previous.items():
                signal.signal(sig, old)
            raise KeyboardInterrupt
        request_stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
