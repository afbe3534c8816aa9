"""The built-in functions of expressions (:data:`FUNCTIONS`: ``int round floor ceil min
max abs str letter`` and the filler constructors, which return a filler block), and the
small value helpers they share with the evaluator in ``expressions.py``.

A leaf: it imports none of the other resolve modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .. import limits
from .. import syntax as s
from ..diagnostics import Span, SpecError

# --------------------------------------------------------------------------- values


def kind_of(v: s.Value) -> str:
    if isinstance(v, s.Scalar):
        return {"int": "an int", "float": "a float", "string": "a string"}.get(
            v.kind, f"the word '{v.value}'")
    if isinstance(v, s.ListValue):
        return "a list"
    return "a block"


def is_number(v: s.Value) -> bool:
    return isinstance(v, s.Scalar) and v.kind in ("int", "float")


def number_of(v: s.Value) -> int | float | None:
    """The value of an int or float literal; None for anything else."""
    if is_number(v) and isinstance(v, s.Scalar) and not isinstance(v.value, str):
        return v.value
    return None


def text_of(v: s.Value, span: Span) -> str:
    if isinstance(v, s.Scalar):
        return repr(v.value) if isinstance(v.value, float) else str(v.value)
    raise SpecError(f"cannot put {kind_of(v)} into a string", span)


def scalar(x: int | float | str, span: Span) -> s.Scalar:
    if isinstance(x, str):
        return s.Scalar(x, "string", span)
    if isinstance(x, float) and not math.isfinite(x):
        raise SpecError("the result is not a finite number", span)
    return s.Scalar(x, "float" if isinstance(x, float) else "int", span)


# --------------------------------------------------------------------------- functions


def _check_args(fn: str, args: Sequence[s.Value], span: Span, lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}" if hi < 99 else f"at least {lo}"
        raise SpecError(f"{fn}() takes {want} argument(s), got {len(args)}", span)


def _number(fn: str, v: s.Value) -> int | float:
    x = number_of(v)
    if x is None:
        raise SpecError(f"{fn}() needs a number, got {kind_of(v)}", v.span)
    return x


def _letter(n: int) -> str:
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def _f_int(args: Sequence[s.Value], span: Span) -> s.Value:
    _check_args("int", args, span, 1, 1)
    (a,) = args
    if isinstance(a, s.Scalar) and a.kind in ("string", "word"):
        digits = len(str(a.value).strip().lstrip("+-"))
        cap = limits.value("INT_DIGITS")
        if digits > cap:  # before int(): its cost grows with the digits
            raise limits.exceeded("INT_DIGITS", f"int() of a string of {digits:,} "
                                  "characters", cap, a.span)
        try:
            return scalar(int(str(a.value)), span)
        except ValueError:
            raise SpecError(f"int() cannot read {a.value!r} as an integer", a.span) from None
    return scalar(int(_number("int", a)), span)


def _f_round(args: Sequence[s.Value], span: Span) -> s.Value:
    _check_args("round", args, span, 1, 2)
    x = _number("round", args[0])
    if len(args) == 2:
        nd = _number("round", args[1])
        if not isinstance(nd, int):
            raise SpecError("round(): the number of digits must be an int", args[1].span)
        return scalar(float(round(x, nd)), span)
    return scalar(int(round(x)), span)


def _f_unary(fn: str, op: Callable[[int | float], int | float]) -> Callable[..., s.Value]:
    def call(args: Sequence[s.Value], span: Span) -> s.Value:
        _check_args(fn, args, span, 1, 1)
        return scalar(op(_number(fn, args[0])), span)
    return call


def _f_minmax(fn: str, op: Callable[..., int | float]) -> Callable[..., s.Value]:
    def call(args: Sequence[s.Value], span: Span) -> s.Value:
        _check_args(fn, args, span, 1, 999)
        if len(args) == 1 and isinstance(args[0], s.ListValue):
            args = args[0].items
            if not args:
                raise SpecError(f"{fn}() of an empty list", span)
        return scalar(op(_number(fn, a) for a in args), span)
    return call


def _f_str(args: Sequence[s.Value], span: Span) -> s.Value:
    _check_args("str", args, span, 1, 1)
    return s.Scalar(text_of(args[0], args[0].span), "string", span)


def _f_letter(args: Sequence[s.Value], span: Span) -> s.Value:
    _check_args("letter", args, span, 1, 1)
    n = _number("letter", args[0])
    if not isinstance(n, int) or n < 0:
        raise SpecError(f"letter() needs an int >= 0, got {n}", args[0].span)
    return s.Scalar(_letter(n), "string", span)


def _filler(kind: str, names: tuple[str, ...], required: int) -> Callable[..., s.Value]:
    def call(args: Sequence[s.Value], span: Span) -> s.Value:
        _check_args(kind, args, span, required, len(names))
        items = [s.Field("type", s.Scalar(kind, "string", span), span, span)]
        for key, a in zip(names, args, strict=False):
            _number(kind, a)
            items.append(s.Field(key, a, span, span))
        return s.Block(tuple(items), span)
    return call


FUNCTIONS: dict[str, Callable[[Sequence[s.Value], Span], s.Value]] = {
    "int": _f_int,
    "round": _f_round,
    "floor": _f_unary("floor", math.floor),
    "ceil": _f_unary("ceil", math.ceil),
    "abs": _f_unary("abs", abs),
    "min": _f_minmax("min", min),
    "max": _f_minmax("max", max),
    "str": _f_str,
    "letter": _f_letter,
    "constant": _filler("constant", ("value",), 0),
    "gaussian": _filler("gaussian", ("std", "mean"), 1),
    "uniform": _filler("uniform", ("min", "max"), 2),
    "xavier": _filler("xavier", (), 0),
    "msra": _filler("msra", (), 0),
    "bilinear": _filler("bilinear", (), 0),
    "positive_unitball": _filler("positive_unitball", (), 0),
}
