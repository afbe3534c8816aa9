"""Importing and running the user's own Python (plugins, Caffe Python layers), with
errors that say what the user needs to know: which module, where Python looked for it,
how to provide it, and the line of their code that raised.

``import_user_module("mypkg.layers", "plugin module")`` imports a module (once: Python's
import system keeps it) or raises :class:`UserCodeError`, whose ``message``, ``hint`` and
``notes`` the caller puts into a diagnostic at its own span.
"""

from __future__ import annotations

import importlib
import sys
import sysconfig
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .diagnostics import Span

__all__ = ["Note", "UserCodeError", "import_user_module", "raised_here", "search_path"]

Note = tuple[str, Span | None]


class UserCodeError(Exception):
    """User code could not be imported, or raised: what to tell the user. ``field``
    names the spec field the error is about, where the caller has several."""

    def __init__(self, message: str, hint: str | None = None, notes: Sequence[Note] = (),
                 field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint, self.notes, self.field = message, hint, tuple(notes), field


def _resolved(*paths: str | Path) -> tuple[str, ...]:
    return tuple(str(Path(p).resolve()) for p in paths)


def raised_here(exc: BaseException) -> list[Note]:
    """A note at the innermost frame of ``exc``'s traceback in the user's code: outside
    netdsl and the standard library, and outside installed packages where the traceback
    passes through the user's own files (an error deep inside yaml is shown where the
    user's code called it). A SyntaxError knows its own place."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return [("raised here", Span(exc.filename, exc.lineno, exc.offset or 1))]
    paths = sysconfig.get_paths()
    ours = _resolved(paths["stdlib"], paths["platstdlib"])
    installed = _resolved(paths["purelib"], paths["platlib"])
    own: list[Span] = []
    other: list[Span] = []  # in installed packages (site-packages may lie in stdlib's)
    netdsl = str(Path(__file__).parent.resolve())
    for f in traceback.extract_tb(exc.__traceback__):
        where = str(Path(f.filename).resolve())
        if f.filename.startswith("<") or where.startswith(netdsl):
            continue
        span = Span(f.filename, f.lineno or 0, 1)
        if where.startswith(installed):
            other.append(span)
        elif not where.startswith(ours):
            own.append(span)
    return [("raised here", span) for span in (own or other)[-1:]]


def search_path() -> str:
    """``sys.path`` as a note shows it."""
    return ", ".join(p if p else "(the current folder)" for p in sys.path)


def import_user_module(module: str, what: str, hint: str | None = None,
                       passthrough: tuple[type[Exception], ...] = ()) -> ModuleType:
    """``importlib.import_module(module)``; a failure is a :class:`UserCodeError` about
    the ``what`` (``"plugin module"``), except for the ``passthrough`` exceptions.
    ``hint`` says how to provide a module Python cannot find (default: add its folder to
    ``PYTHONPATH``)."""
    try:
        return importlib.import_module(module)
    except passthrough:
        raise
    except ModuleNotFoundError as e:
        missing = e.name or module
        looked = (f"Python looked in sys.path: {search_path()}", None)
        if module == missing or module.startswith(missing + "."):
            raise UserCodeError(
                f"cannot import {what} '{module}': no module named '{missing}'",
                hint or f"add the folder holding {module.replace('.', '/')}.py to PYTHONPATH "
                "(PYTHONPATH=/path/to/folder netdsl ...)", [looked]) from e
        raise UserCodeError(
            f"importing {what} '{module}' failed: no module named '{missing}'",
            f"'{module}' imports '{missing}', which Python cannot find: add the folder "
            "holding it to PYTHONPATH too", [*raised_here(e), looked]) from e
    except UserCodeError:
        raise
    except Exception as e:  # the module's own code failed
        raise UserCodeError(f"importing {what} '{module}' failed: {type(e).__name__}: {e}",
                            None, raised_here(e)) from e
