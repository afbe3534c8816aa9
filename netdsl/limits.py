"""Every front-end limit in one place: how deep, how long and how large a spec (and what
it expands to) may be before netdsl refuses it with a diagnostic, instead of running out
of stack, memory or time.

Each limit is checked *before* the work it bounds (the depth before the syntax tree is
walked, an integer literal's digits before it is converted, the size of a product or a
joined string before it is computed). The defaults are far above any real net (AlexNet's
deepest nesting is 4, its longest integer 7 digits); ``NETDSL_MAX_<NAME>`` raises one,
e.g. ``NETDSL_MAX_DEPTH=150``. File sizes have their own limits in ``files.py``
(``NETDSL_MAX_SPEC_BYTES`` ...).

Torch-free, and a leaf: it imports only ``diagnostics``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .diagnostics import DataError, Span, SpecError

__all__ = ["LIMITS", "Limit", "LimitError", "exceeded", "value"]


class LimitError(SpecError):
    """A limit passed: never read as "this text is not an expression" (``--set`` takes
    such text as a string), always reported."""


@dataclass(frozen=True)
class Limit:
    """A named limit: its default, the most it may be raised to, and what it bounds."""

    name: str
    default: int
    doc: str
    #: The environment cannot raise it past this (Python's own stack or int limits).
    ceiling: int | None = None

    @property
    def env(self) -> str:
        return f"NETDSL_MAX_{self.name}"


LIMITS: dict[str, Limit] = {lim.name: lim for lim in (
    Limit("DEPTH", 100, "nesting of blocks, lists, parentheses, calls, operators and let "
          "chains, counted together", ceiling=200),
    Limit("INT_DIGITS", 400, "digits of an integer literal (or of a string read by int()); "
          "above INT_BITS' 309, so that a computed integer written out reads back",
          ceiling=4300),
    Limit("INT_BITS", 1024, "bits of an integer computed by an expression", ceiling=14_000),
    Limit("STRING_LENGTH", 1_000_000, "characters of a string built by '+' or '${}'"),
    Limit("VALUE_SIZE", 1_000_000, "items in one value built by expressions (a list joined "
          "with '+', a let used many times inside another), counted as expanded"),
    Limit("REPEAT", 100_000, "the count of one repeat"),
    Limit("ITERATIONS", 1_000_000, "repeat iterations in one spec, all repeats together"),
    Limit("LAYERS", 100_000, "layers made by group instances and repeats in one spec"),
    Limit("GROUP_DEPTH", 32, "group instances nested inside each other", ceiling=64),
    Limit("IMPORT_DEPTH", 32, "imports nested inside each other", ceiling=200),
    Limit("IMPORTS", 1000, "import statements followed in one spec (a file imported "
          "along two paths counts twice)"),
    Limit("IMPORT_BYTES", 64 << 20, "bytes of all the files one spec imports, each "
          "file counted once"),
)}


def value(name: str, default: int | None = None) -> int:
    """The limit ``name``: ``NETDSL_MAX_<NAME>`` if set, else ``default`` (the module
    constant a caller keeps, which tests may patch), else the limit's own default."""
    lim = LIMITS[name]
    text = os.environ.get(lim.env)
    if not text:
        return lim.default if default is None else default
    try:
        n = int(float(text))
    except (ValueError, OverflowError):
        raise DataError(f"{lim.env}={text!r} is not a whole number", None,
                        f"e.g. {lim.env}={lim.default * 2}") from None
    if n < 1:
        raise DataError(f"{lim.env}={text!r} must be at least 1", None,
                        f"the default is {lim.default:,}")
    if lim.ceiling is not None and n > lim.ceiling:
        raise DataError(f"{lim.env}={text!r} is over {lim.ceiling:,}, the most netdsl "
                        "can check safely", None, f"the default is {lim.default:,}")
    return n


def exceeded(name: str, what: str, limit: int, span: Span | None,
             hint: str | None = None, unit: str = "") -> LimitError:
    """The diagnostic for a limit passed: ``what`` says what was found, with its size
    ("an integer literal of 5,000 digits"); the message adds the limit, the hint (kept
    short: it follows "  hint: " on an 80-column line) how to raise it."""
    lim = LIMITS[name]
    return LimitError(f"{what}, over the limit of {limit:,}{unit}", span,
                      f"{hint}, or raise {lim.env}=N" if hint
                      else f"raise it with {lim.env}=N if the spec is right")
