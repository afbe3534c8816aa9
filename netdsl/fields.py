"""One generic converter from syntax blocks to typed, frozen dataclasses.

Layer parameters, fillers, transforms and the solver section are all plain frozen
dataclasses whose fields carry a one-line doc in their metadata (``doc("...")``). This
module turns a :class:`syntax.Block` into such a dataclass, so "unknown field", "wrong
type", "given twice" and "did you mean" work the same way for every one of them, and
generates their reference documentation.

Caffe's enum fields are :class:`CaffeEnum` subclasses whose members carry caffe.proto's
numbers, so a field reads the name (``norm: L1``) or Caffe's number (``norm: 1``) alike.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin, get_type_hints

from . import syntax as s
from .diagnostics import NetdslError, Span, SpecError, did_you_mean, raise_all

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def doc(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: ``field(default=1, metadata=doc("step between windows"))``.

    ``numbers=SomeCaffeEnum`` on a ``str`` field that is an enum in Caffe's proto but
    takes any word here (``engine``, ``backend``: forks add their own) makes Caffe's
    numbers read as that enum's names (``engine: 1`` is ``"CAFFE"``).
    """
    return {"doc": text, **extra}


class CaffeEnum(enum.Enum):
    """An enum of Caffe's proto (or a fork's): each member's value is the number
    caffe.proto gives it, so a field reads Caffe's number as well as the name. Protobuf
    text format accepts both (``norm: 1`` is ``norm: L1`` for HingeLossParameter.Norm,
    whose L1 is 1), and Caffe's numbers do not always count from 0. Declare the members
    with the proto's numbers, citing the proto::

        class HingeNorm(CaffeEnum):  # HingeLossParameter.Norm (BVLC caffe.proto)
            L1 = 1
            L2 = 2

    A number the enum does not have is an error listing the names and numbers it has.
    A plain :class:`enum.Enum` field (a string in Caffe's proto, such as a filler's
    ``type``) takes names only.
    """

    @classmethod
    def numbered(cls) -> str:
        """``"L1 = 1, L2 = 2"``: the names with Caffe's numbers, for messages."""
        return ", ".join(f"{m.name} = {m.value}" for m in cls)

    @classmethod
    def by_number(cls, number: int, key: str, span: Span) -> CaffeEnum:
        """The member Caffe numbers ``number``; a SpecError at ``span`` if none."""
        for m in cls:
            if m.value == number:
                return m
        raise SpecError(f"'{key}' has no value numbered {number}", span,
                        f"Caffe numbers its values {cls.numbered()}; the names work too")


def field_doc(f: Field[Any]) -> str:
    return str(f.metadata.get("doc", ""))


@typing.no_type_check
def _hints(cls: type) -> dict[str, Any]:
    cache = _HINTS.get(cls)
    if cache is None:
        cache = _HINTS[cls] = get_type_hints(cls)
    return cache


_HINTS: dict[type, dict[str, Any]] = {}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_tuple(tp: Any) -> bool:
    return get_origin(tp) is tuple


def _type_name(tp: Any) -> str:
    tp, _ = _unwrap_optional(tp)
    if _is_tuple(tp):
        inner = get_args(tp)[0]
        return f"list of {_type_name(inner)}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(m.name for m in tp)
    if dataclasses.is_dataclass(tp):
        return "a { ... } block"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _describe(v: s.Value) -> str:
    if isinstance(v, s.Scalar):
        return {"string": f'"{v.value}"', "word": str(v.value)}.get(v.kind, repr(v.value))
    if isinstance(v, s.ListValue):
        return "a list"
    if isinstance(v, s.Block):
        return "a { ... } block"
    return "an expression"


def convert_value(tp: Any, v: s.Value, key: str) -> Any:
    """Convert one literal value to the Python type ``tp``; raises SpecError at its span."""
    tp, _ = _unwrap_optional(tp)

    def bad(extra: str | None = None) -> SpecError:
        return SpecError(
            f"'{key}' must be {_type_name(tp)}, got {_describe(v)}", v.span, extra
        )

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(v, s.Block):
            raise bad()
        return convert(tp, v.items, f"'{key}'")
    if _is_tuple(tp):
        inner = get_args(tp)[0]
        items = v.items if isinstance(v, s.ListValue) else (v,)
        return tuple(convert_value(inner, i, key) for i in items)
    if isinstance(v, s.Block) and not dataclasses.is_dataclass(tp):
        raise bad()
    if not isinstance(v, s.Scalar):
        raise bad()
    val, kind = v.value, v.kind
    if tp is bool:
        if kind == "word" and str(val).lower() in ("true", "false"):
            return str(val).lower() == "true"
        if kind == "int" and val in (0, 1):
            return bool(val)
        raise bad()
    if tp is int:
        if kind == "int":
            return int(val)
        if kind == "float" and float(val).is_integer():
            return int(val)
        hint = "use int(...) or round(...) around an expression" if kind == "float" else None
        raise bad(hint)
    if tp is float:
        if kind in ("int", "float"):
            try:
                return float(val)
            except OverflowError:  # an int past float64's range
                raise bad("it is too large for a floating-point number") from None
        if kind == "word" and str(val).lower() in ("inf", "-inf", "nan", "infinity"):
            return float(str(val).lower().replace("infinity", "inf"))
        raise bad()
    if tp is str:
        if kind in ("string", "word"):
            return str(val)
        raise bad()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if kind in ("string", "word"):
            text = str(val)
            for m in tp:
                if m.name.lower() == text.lower():
                    return m
            raise SpecError(
                f"'{key}' must be one of {', '.join(m.name for m in tp)}; got {text}",
                v.span,
                did_you_mean(text, [m.name for m in tp]),
            )
        if kind == "int" and issubclass(tp, CaffeEnum):
            return tp.by_number(int(val), key, v.span)
        raise bad("write the name: Caffe's proto has no numbers for it" if kind == "int"
                  else None)
    raise TypeError(f"netdsl bug: unsupported field type {tp!r} for {key}")


def _numbered(f: Field[Any], v: s.Value, key: str) -> str | None:
    """A ``str`` field with ``numbers=`` in its metadata, given one of Caffe's numbers:
    that number's name (``engine: 1`` -> ``"CAFFE"``); else None."""
    numbers = f.metadata.get("numbers")
    if numbers is None or not (isinstance(v, s.Scalar) and v.kind == "int"):
        return None
    return str(numbers.by_number(int(v.value), key, v.span).name)


class FieldError(ValueError):
    """A problem with one field of a typed value, raised where no span is known (a
    ``__post_init__`` check, a layer's ``data_source`` hook): the caller reports it at the
    field's span."""

    def __init__(self, message: str, field_name: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.field_name, self.hint = field_name, hint


def convert(
    cls: type[T],
    items: Iterable[s.Item],
    what: str,
    *,
    ignore: Iterable[str] = (),
    extra_names: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from the fields among ``items``.

    ``ignore`` names keys handled elsewhere (skipped silently); ``extra_names`` only
    widens the "did you mean" candidates. ``values`` pre-sets fields (used for defaults
    that come from outside the block). All unknown fields are reported together.
    """
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    ignored = set(ignore)
    grouped: dict[str, list[s.Field]] = {}
    errors: list[NetdslError] = []
    for item in items:
        if not isinstance(item, s.Field) or item.key in ignored:
            continue
        if item.key not in fields:
            hint = did_you_mean(item.key, list(fields) + list(extra_names))
            errors.append(SpecError(f"unknown field '{item.key}' for {what}", item.key_span, hint))
            continue
        grouped.setdefault(item.key, []).append(item)
    kwargs: dict[str, Any] = dict(values or {})
    for name, occurrences in grouped.items():
        tp = hints[name]
        base, _ = _unwrap_optional(tp)
        try:
            if _is_tuple(base):
                inner = get_args(base)[0]
                nested = _is_tuple(inner) or dataclasses.is_dataclass(inner)
                out: list[Any] = []
                for occ in occurrences:
                    if nested and not (
                        isinstance(occ.value, s.ListValue)
                        and occ.value.items
                        and isinstance(occ.value.items[0], s.ListValue | s.Block)
                    ):
                        out.append(convert_value(inner, occ.value, name))
                    else:
                        out.extend(convert_value(base, occ.value, name))
                kwargs[name] = tuple(out)
            else:
                if len(occurrences) > 1:
                    second = occurrences[1]
                    raise SpecError(
                        f"'{name}' is given more than once in {what}",
                        second.key_span,
                        f"first given at line {occurrences[0].span.line}",
                    )
                value = occurrences[0].value
                named = _numbered(fields[name], value, name)
                kwargs[name] = named if named is not None else convert_value(tp, value, name)
        except NetdslError as e:
            errors.append(e)
    for name, f in fields.items():
        if name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            span = next((i.span for i in items if isinstance(i, s.Field)), None)
            errors.append(SpecError(f"{what} needs '{name}' ({field_doc(f)})", span))
    raise_all(errors)
    try:
        obj = cls(**kwargs)
    except NetdslError:
        raise
    except OverflowError:  # a __post_init__ computing with an int past int64
        raise_all(_past_int64(hints, grouped))
        raise
    except (TypeError, ValueError) as e:  # a __post_init__ check without a span
        spans = field_spans(items)
        span = spans.get(getattr(e, "field_name", None) or "")
        if span is None:
            span = next((i.span for i in items if isinstance(i, s.Field)), None)
        raise SpecError(f"invalid {what}: {e}", span, getattr(e, "hint", None)) from None
    raise_all(_past_int64(hints, grouped))
    return obj


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _has_int(tp: Any) -> bool:
    tp, _ = _unwrap_optional(tp)
    if _is_tuple(tp):
        return _has_int(get_args(tp)[0])
    return tp is int


def _int_literals(v: s.Value) -> Iterable[tuple[int, Span]]:
    if isinstance(v, s.ListValue):
        for item in v.items:
            yield from _int_literals(item)
    elif isinstance(v, s.Scalar) and v.kind in ("int", "float"):
        f = v.value if v.kind == "int" else float(v.value)
        if v.kind == "int" or (isinstance(f, float) and f.is_integer()):
            yield int(f), v.span


def _past_int64(hints: Mapping[str, Any], grouped: Mapping[str, list[s.Field]]
                ) -> list[NetdslError]:
    """Integer values outside int64, which torch takes every size, count and index as: an
    error at the field (key and value), or at the list element that is too large.

    Run after the dataclass is built, so that a ``__post_init__`` check (with its own
    message) speaks first."""
    errors: list[NetdslError] = []
    for name, occurrences in grouped.items():
        if not _has_int(hints[name]):
            continue
        for occ in occurrences:
            for value, span in _int_literals(occ.value):
                if not INT64_MIN <= value <= INT64_MAX:
                    where = occ.span if isinstance(occ.value, s.Scalar) else span
                    errors.append(SpecError(
                        f"{name} must fit in 64 bits (int64, as torch takes it), got {value}",
                        where, "int64 runs from -2**63 to 2**63 - 1"))
    return errors


def field_spans(items: Iterable[s.Item]) -> dict[str, Span]:
    """Where each field of a block was written (the first occurrence)."""
    out: dict[str, Span] = {}
    for i in items:
        if isinstance(i, s.Field) and i.key not in out:
            out[i.key] = i.span
    return out


def default_repr(f: Field[Any]) -> str:
    if f.default is not MISSING:
        d = f.default
    elif f.default_factory is not MISSING:
        d = f.default_factory()
    else:
        return "required"
    if isinstance(d, enum.Enum):
        return d.name
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, float) and math.isinf(d):
        return "inf"
    if d is None:
        return "-"
    if isinstance(d, tuple):
        return "[" + ", ".join(map(str, d)) + "]" if d else "[]"
    if dataclasses.is_dataclass(d):
        return "{...}"
    if isinstance(d, str):
        return f'"{d}"'
    return str(d)


def reference_rows(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, doc) for each field: the source of generated docs."""
    hints = _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        rows.append((f.name, _short_type(hints[f.name]), default_repr(f), field_doc(f)))
    return rows


def _short_type(tp: Any) -> str:
    tp, opt = _unwrap_optional(tp)
    if _is_tuple(tp):
        return f"[{_short_type(get_args(tp)[0])}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "|".join(m.name for m in tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.__name__
    return getattr(tp, "__name__", str(tp))
