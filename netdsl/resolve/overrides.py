"""``--set`` overrides: ``name=value`` replaces a let everywhere (the value parsed as an
expression; text that does not parse is a string); ``a.b=value`` sets field ``b`` inside
top-level block ``a`` (or, if there is none, the layer named ``a``; else the block is
created), the value parsed as a literal, else taken as a string.

Let overrides apply before expansion, field overrides to the expanded, merged and
edited list. Each flag's text is remembered as a source, so errors point into it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .. import limits
from .. import syntax as s
from ..diagnostics import NetdslError, Span, SpecError, did_you_mean, remember_source
from .common import layer_name, set_fields
from .expressions import Binding, Evaluator, parse_expr


def apply_let_overrides(ev: Evaluator, overrides: Mapping[str, str]) -> list[tuple[str, str]]:
    """Rebind the lets that `overrides` name; return the dotted (field) overrides, in order."""
    dotted: list[tuple[str, str]] = []
    for key, text in overrides.items():
        if "." in key:
            dotted.append((key, text))
            continue
        path = f"<--set {key}>"
        remember_source(path, f"{key}={text}")
        span = Span(path, 1, 1, 1, len(key) + 1)
        if key not in ev.globals.vars:
            names = sorted(ev.globals.vars)
            listing = ", ".join(names) if names else "none"
            raise SpecError(f"--set {key}: there is no variable '{key}' "
                            f"(variables: {listing})", span,
                            did_you_mean(key, names) or "--set name=value replaces a let; "
                            "use block.field=value to set a field")
        value = _value(key, text, path, as_literal=False)
        ev.globals.vars[key] = Binding(key, expr=value, scope=ev.globals, span=value.span)
    return dotted


def _value(key: str, text: str, path: str, as_literal: bool) -> s.Value:
    """The flag's text as an expression (a literal, if as_literal), else as a string."""
    col0 = len(key) + 2
    span = Span(path, 1, col0, 1, col0 + len(text))
    try:
        v = parse_expr(text, span, col0, False)
    except limits.LimitError:
        raise  # too deep or too large, whatever it means
    except NetdslError:
        return s.Scalar(text, "string", span)
    if (as_literal and not _is_literal_value(v)) or _words_in_arithmetic(v):
        return s.Scalar(text, "string", span)  # e.g. a path: data/train.txt
    return v


def apply_field_override(ev: Evaluator, items: list[s.Field], key: str,
                         text: str) -> list[s.Field]:
    """Set the field that the dotted `key` names, in every block or layer it names."""
    path = f"<--set {key}>"
    remember_source(path, f"{key}={text}")
    value = _value(key, text, path, as_literal=True)
    value = ev.eval(value, ev.globals)
    parts = key.split(".")
    if any(not p for p in parts):
        raise SpecError(f"--set {key}: empty name in dotted key", Span(path, 1, 1))
    if len(parts) > ev.max_depth:
        raise limits.exceeded("DEPTH", f"--set {key[:20]}...: a key of {len(parts)} names",
                              ev.max_depth, Span(path, 1, 1, 1, len(key) + 1))
    keys = _part_spans(path, parts)
    whole = Span(path, 1, 1, 1, len(key) + len(text) + 2)
    head = parts[0]
    targets = [i for i, f in enumerate(items) if f.key == head and isinstance(f.value, s.Block)]
    if not targets:
        targets = [i for i, f in enumerate(items) if layer_name(f) == head
                   and (head not in SECTIONS or _layer_has(f, parts[1]))]
    out = list(items)
    if not targets:
        out.append(s.Field(head, s.Block((), whole), whole, keys[0]))
        targets = [len(out) - 1]
    for i in targets:
        f = out[i]
        assert isinstance(f.value, s.Block)
        out[i] = dataclasses.replace(f, value=_set_path(f.value, parts[1:], keys[1:], value,
                                                        whole))
    return out


#: Top-level sections a ``--set`` names: ``--set data.mean_value=...`` on a Caffe net whose
#: input layer is called "data" sets the section, unless that layer has the field.
SECTIONS = ("data", "solver", "runtime")


def _layer_has(f: s.Field, key: str) -> bool:
    """Whether the layer ``f`` writes ``key`` or its type has such a field."""
    import dataclasses as dc

    from ..layers import TYPES

    assert isinstance(f.value, s.Block)
    if f.value.first(key) is not None or key in ("shape", "top", "bottom", "name", "type"):
        return True
    type_f = f.value.first("type")
    kind = TYPES.get(str(type_f.value.value)) if type_f is not None and isinstance(
        type_f.value, s.Scalar) else None
    return kind is not None and key in {x.name for x in dc.fields(kind.Params)}


def _part_spans(path: str, parts: list[str]) -> list[Span]:
    """Where each name of a dotted --set key is in the flag's text (``a.b.c=...``)."""
    spans: list[Span] = []
    col = 1
    for p in parts:
        spans.append(Span(path, 1, col, 1, col + len(p)))
        col += len(p) + 1
    return spans


def _set_path(block: s.Block, parts: list[str], keys: list[Span], value: s.Value,
              whole: Span) -> s.Block:
    """Set the field ``parts`` names inside block; the keys of the fields made point at
    their names in the flag (``keys``): an unknown field is shown at its name."""
    key = parts[0]
    if len(parts) == 1:  # an error about the value points at it, one about the key at it
        return set_fields(block, [s.Field(key, value, value.span, keys[0])])
    inner = [f for f in block.fields(key) if isinstance(f.value, s.Block)]
    if not inner:
        new = _set_path(s.Block((), whole), parts[1:], keys[1:], value, whole)
        return set_fields(block, [s.Field(key, new, whole, keys[0])])
    items: list[s.Item] = []
    for f in block.items:
        if isinstance(f, s.Field) and f.key == key and isinstance(f.value, s.Block):
            f = dataclasses.replace(f, value=_set_path(f.value, parts[1:], keys[1:], value,
                                                       whole))
        items.append(f)
    return s.Block(tuple(items), block.span)


def _is_literal_value(v: s.Value) -> bool:
    if isinstance(v, s.Scalar):
        return not (v.kind == "string" and "${" in str(v.value))
    if isinstance(v, s.ListValue):
        return all(_is_literal_value(i) for i in v.items)
    if isinstance(v, s.Block):
        return all(isinstance(i, s.Field) and _is_literal_value(i.value) for i in v.items)
    return False


def _words_in_arithmetic(v: s.Value) -> bool:
    """True for text like ``data/x.txt`` that parses as arithmetic on bare words."""
    if isinstance(v, s.BinOp):
        return any(_words_in_arithmetic(x) or (isinstance(x, s.Scalar) and x.kind == "word")
                   for x in (v.left, v.right))
    if isinstance(v, s.Neg):
        return _words_in_arithmetic(v.operand) or (
            isinstance(v.operand, s.Scalar) and v.operand.kind == "word")
    return False
