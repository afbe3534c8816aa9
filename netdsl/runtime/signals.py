"""Signals during training, as Caffe's ``--sigint_effect`` and ``--sighup_effect``.

Each of SIGINT (Ctrl-C) and SIGHUP has an effect: ``stop`` (finish the iteration,
snapshot, stop), ``snapshot`` (finish the iteration, snapshot, go on) or ``none`` (ignored).
Caffe's defaults: SIGINT stops, SIGHUP snapshots. SIGTERM always stops (as a scheduler's
kill: there is no Caffe flag for it).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["EFFECTS", "signal_effects", "stop_on_signals"]

#: What a signal may do (Caffe's ``SolverAction``).
EFFECTS = ("stop", "snapshot", "none")


def signal_effects(sigint: str = "stop", sighup: str = "snapshot") -> dict[int, str]:
    """The effect of each handled signal (Caffe's flags and defaults; SIGTERM: stop)."""
    for name, value in (("sigint", sigint), ("sighup", sighup)):
        if value not in EFFECTS:
            from netdsl.diagnostics import UsageError

            raise UsageError(f"--{name}_effect must be one of {', '.join(EFFECTS)}, "
                             f"got '{value}'")
    effects = {int(signal.SIGINT): sigint, int(signal.SIGTERM): "stop"}
    if hasattr(signal, "SIGHUP"):  # not on Windows
        effects[int(signal.SIGHUP)] = sighup
    return effects


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[int], None], stopping: Callable[[], bool],
                    repeat_aborts: bool = True, effects: Mapping[int, str] | None = None,
                    request_snapshot: Callable[[int], None] | None = None) -> Iterator[None]:
    """A ``stop`` signal calls ``request_stop(signum)`` (stop after the current iteration);
    a second one (``stopping()`` is already true) raises KeyboardInterrupt, unless
    ``repeat_aborts`` is false: a process of a launched run gets Ctrl-C twice, from the
    terminal and from the launcher, and must still snapshot (the launcher kills it if it
    takes too long). A ``snapshot`` signal calls ``request_snapshot(signum)``; a ``none``
    one is ignored. ``effects``: signal number -> effect (default: SIGINT and SIGTERM
    stop, as :func:`signal_effects` without SIGHUP). Only the main thread can install
    handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if effects is None:
        effects = {int(signal.SIGINT): "stop", int(signal.SIGTERM): "stop"}
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        effect = effects.get(signum, "stop")
        if effect == "none":
            return
        if effect == "snapshot" and request_snapshot is not None:
            request_snapshot(signum)
            return
        if stopping() and repeat_aborts:
            for sig, old in previous.items():
                signal.signal(sig, old)
            raise KeyboardInterrupt
        request_stop(signum)

    for sig in effects:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
