"""User-facing errors and warnings: the one place that defines and renders them.

Every error a user can cause is a :class:`NetdslError` carrying a :class:`Span`.
``cli.main`` prints :func:`render` of it to stderr and exits 1; anything that is not a
``NetdslError`` is a bug in netdsl and keeps its traceback.

A :class:`NetdslWarning` is what Caffe would log and go on after (a placeholder input
too small for a kernel, a V0 field its upgrade drops): :func:`warn` renders it like an
error, with ``warning:``, and logs it through the ``netdsl`` logger (the CLI sends that
to stderr); :func:`collect_warnings` also hands the warnings of a block of code to its
caller.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

_SOURCES: dict[str, str] = {}


def remember_source(path: str, text: str) -> None:
    """Keep a file's text so that errors pointing into it can quote the line."""
    _SOURCES[path] = text


_HIDDEN: set[str] = set()


def hide_source(path: str) -> None:
    """Never quote ``path``'s lines in a message (a file imported from outside the
    spec's folder tree: an error names it, and says nothing of what it holds)."""
    _HIDDEN.add(path)


def source_line(path: str, line: int) -> str | None:
    if path in _HIDDEN:
        return None
    text = _SOURCES.get(path)
    if text is None:
        try:  # only a small regular file: never wait on a FIFO or read a device
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 16 << 20:
                return None
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        _SOURCES[path] = text
    lines = text.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


class Span(NamedTuple):
    """A region of a source file; lines and columns count from 1 (0: unknown).

    A NamedTuple rather than a frozen dataclass: the parser makes one per token, and
    tuple construction is several times cheaper.
    """

    path: str
    line: int = 0
    col: int = 0
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.col}"


NO_SPAN = Span("netdsl")  # "netdsl: error: ...", as a program names itself


class NetdslError(Exception):
    """An error the user can fix: a message, where it is, and perhaps a hint."""

    kind = "error"

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        hint: str | None = None,
        notes: Sequence[tuple[str, Span | None]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span or NO_SPAN
        self.hint = hint
        self.notes = tuple(notes)

    def with_note(self, note: str, span: Span | None = None) -> NetdslError:
        self.notes = self.notes + ((note, span),)
        return self

    def __str__(self) -> str:
        return f"{self.span}: error: {self.message}"


class ParseError(NetdslError):
    """The text is not valid .net / prototxt syntax."""


class SpecError(NetdslError):
    """The spec is well formed but means something impossible (unknown field, bad value)."""


class GraphError(NetdslError):
    """The layers do not form a valid graph (missing bottom, duplicate name, cycle)."""


class ShapeError(NetdslError):
    """Shape inference failed: the layer cannot take the shapes it is given."""


class PlacementError(NetdslError):
    """The layers cannot be placed on the devices asked for."""


class DataError(NetdslError):
    """Data, weights or snapshots are missing, unreadable or do not fit."""


class UsageError(NetdslError):
    """A bad command-line flag or argument (exit status 2)."""


class ErrorList(NetdslError):
    """Several independent errors collected before raising, reported together."""

    def __init__(self, errors: Sequence[NetdslError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.span, first.hint, first.notes)
        self.errors = tuple(errors)


def raise_all(errors: Sequence[NetdslError]) -> None:
    """Raise the collected errors, if any: one as itself, several as an ErrorList."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ErrorList(errors)


Notes = tuple[tuple[str, Span | None], ...]


@dataclass(frozen=True)
class NetdslWarning:
    """Something Caffe accepts with a log line and goes on after: rendered as an error
    is, with ``warning:``, and never raised."""

    kind: ClassVar[str] = "warning"
    message: str
    span: Span = NO_SPAN
    hint: str | None = None
    notes: Notes = ()

    def __str__(self) -> str:
        return f"{self.span}: warning: {self.message}"


_LOG = logging.getLogger("netdsl")
_COLLECTOR: ContextVar[list[NetdslWarning] | None] = ContextVar("netdsl_warnings", default=None)


def warn(
    message: str,
    span: Span | None = None,
    hint: str | None = None,
    notes: Sequence[tuple[str, Span | None]] = (),
) -> NetdslWarning:
    """Report a warning: logged (rendered, with the quoted line) on the ``netdsl``
    logger, and kept by the innermost :func:`collect_warnings` block, if any."""
    w = NetdslWarning(message, span or NO_SPAN, hint, tuple(notes))
    sink = _COLLECTOR.get()
    if sink is not None:
        sink.append(w)
    _LOG.warning("%s", render(w))
    return w


@contextmanager
def collect_warnings() -> Iterator[list[NetdslWarning]]:
    """``with collect_warnings() as ws: ...``: the warnings made inside, in order (they
    are logged as well)."""
    sink: list[NetdslWarning] = []
    token = _COLLECTOR.set(sink)
    try:
        yield sink
    finally:
        _COLLECTOR.reset(token)


def suggest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches for a misspelt word, best first (case-insensitive).

    Only matches about as close as the best one are kept, so 'kernal_size' suggests
    'kernel_size' alone, not every 'kernel_*'.
    """
    lower: dict[str, str] = {}
    for c in candidates:
        lower.setdefault(c.lower(), c)
    w = word.lower()
    scored = []
    for key, orig in lower.items():
        m = difflib.SequenceMatcher(None, w, key)
        if m.real_quick_ratio() >= 0.6 and m.quick_ratio() >= 0.6:
            r = m.ratio()
            if r >= 0.6:
                scored.append((r, orig))
    scored.sort(key=lambda x: -x[0])
    if not scored:
        return []
    best = scored[0][0]
    return [c for r, c in scored[:n] if r >= best - 0.08]


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    hits = suggest(word, candidates)
    if not hits:
        return None
    if len(hits) == 1:
        return f"did you mean '{hits[0]}'?"
    return "did you mean " + ", ".join(f"'{h}'" for h in hits[:-1]) + f" or '{hits[-1]}'?"


#: The most characters of a source line quoted under a message (a longer one is cut around
#: the caret, so that a message stays one paragraph).
QUOTE_WIDTH = 120
#: The most errors of one list rendered in full.
MAX_RENDERED = 10


def _quote(span: Span) -> list[str]:
    if span.line <= 0:
        return []
    text = source_line(span.path, span.line)
    if text is None:
        return []
    text = text.expandtabs(1)
    gutter = f"{span.line:>5}"
    start = min(max(span.col, 1), len(text) + 1)  # a column past the end: the end
    if span.end_line == span.line and span.end_col > start:
        width = span.end_col - start
    else:
        width = max(len(text) - start + 1, 1)
    width = max(1, min(width, max(len(text) - start + 1, 1)))
    if len(text) > QUOTE_WIDTH:  # a window around the caret keeps the message one paragraph
        first = max(0, min(start - 1 - QUOTE_WIDTH // 4, len(text) - QUOTE_WIDTH))
        window = text[first:first + QUOTE_WIDTH]
        lead = "…" if first > 0 else ""
        text = lead + window + ("…" if first + QUOTE_WIDTH < len(text) else "")
        start = start - first + len(lead)
        width = max(1, min(width, QUOTE_WIDTH - (start - 1 - len(lead))))
    marker = "^" + "~" * (width - 1)
    return [f"{gutter} | {text}", f"{' ' * len(gutter)} | {' ' * (start - 1)}{marker}"]


_LONG_WORD = re.compile(r"[^\s'\"/]{61,}")  # not a path's folders: a path is shown whole


def _short(text: str) -> str:
    """A message with each very long word (a name or number the user wrote) cut to its
    head and length, so that the message stays one paragraph."""
    return _LONG_WORD.sub(lambda m: f"{m[0][:30]}... ({len(m[0]):,} characters)", text)


def _render_one(err: NetdslError | NetdslWarning, again: int = 0) -> list[str]:
    out = [f"{err.span}: {err.kind}: {_short(err.message)}"]
    out += _quote(err.span)
    for note, where in err.notes:
        out.append(f"  note: {_short(note)}" + (f" ({where})" if where and where.line > 0
                                                 else ""))
    if again:
        out.append(f"  note: the same error {again} more time{'s' * (again > 1)} where this "
                   "is expanded")
    if err.hint:
        out.append(f"  hint: {_short(err.hint)}")
    return out


def render(err: NetdslError | NetdslWarning) -> str:
    """The full text shown to the user: location, message, quoted line, caret, hint."""
    errors = err.errors if isinstance(err, ErrorList) else (err,)
    # one error per message and place: a group used 9 times repeats its body's errors 9 times
    repeats: dict[tuple[str, str], int] = {}
    unique: list[NetdslError | NetdslWarning] = []
    for e in errors:
        key = (e.message, str(e.span))
        if key not in repeats:
            unique.append(e)
        repeats[key] = repeats.get(key, 0) + 1
    lines: list[str] = []
    for e in unique[:MAX_RENDERED]:
        again = repeats[(e.message, str(e.span))] - 1
        lines += _render_one(e, again)
    if len(unique) > MAX_RENDERED:
        lines.append(f"... and {len(unique) - MAX_RENDERED} more errors")
    return "\n".join(lines)
