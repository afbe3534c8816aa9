"""Helpers every resolve stage shares: reading a layer block's name, tops and bottoms,
rewriting its fields, and adding expansion notes to errors.

A leaf: it imports none of the other resolve modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from .. import syntax as s
from ..diagnostics import NetdslError, Span, SpecError

MAX_NOTES = 6

_MORE = ("...", None)


def add_note(e: NetdslError, note: s.Note) -> NetdslError:
    """Add an expansion note, keeping the innermost ones and the outermost one."""
    if len(e.notes) < MAX_NOTES:
        e.with_note(*note)
    elif e.notes[MAX_NOTES - 1] == _MORE:
        e.notes = e.notes[:-1] + (note,)
    else:
        e.notes = e.notes[:MAX_NOTES - 1] + (_MORE, note)
    return e


def with_note(f: s.Field, note: s.Note) -> s.Field:
    return dataclasses.replace(f, notes=f.notes + (note,))


def misplaced(it: s.Item, where: str) -> SpecError:
    what = {s.Import: "import", s.GroupDef: "a group definition", s.Replace: "replace",
            s.Update: "update", s.Remove: "remove", s.Insert: "insert", s.Let: "let",
            s.Repeat: "repeat"}.get(type(it), type(it).__name__)
    hint = "move it to the top level of the file" if isinstance(
        it, s.Import | s.GroupDef | s.Replace | s.Update | s.Remove | s.Insert) else None
    return SpecError(f"{what} is not allowed {where}", it.span, hint)


def head_span(span: Span, name: str) -> Span:
    """The first len(name) columns of span: a function's or group's name in a call."""
    return Span(span.path, span.line, span.col, span.line, span.col + len(name))


# --------------------------------------------------------------------------- reading blocks


def strs(v: s.Value) -> list[str]:
    items = v.items if isinstance(v, s.ListValue) else (v,)
    return [str(i.value) for i in items if isinstance(i, s.Scalar) and i.kind in ("string", "word")]


def values_of(block: s.Block, key: str) -> list[str]:
    out: list[str] = []
    for f in block.fields(key):
        out.extend(strs(f.value))
    return out


def name_of(block: s.Block) -> str | None:
    v = block.scalar("name")
    return None if v is None else str(v)


def tops_of(block: s.Block) -> list[str]:
    tops = values_of(block, "top")
    if tops:
        return tops
    name = name_of(block)
    return [name] if name is not None else []


def is_layer(f: s.Field) -> bool:
    return f.key == "layer" and isinstance(f.value, s.Block)


def layer_of(f: s.Field) -> s.Block | None:
    """The body of a ``layer { ... }`` field; None for any other field."""
    return f.value if f.key == "layer" and isinstance(f.value, s.Block) else None


def layer_name(f: s.Field) -> str | None:
    """The name of a ``layer { ... }`` field; None for any other field (or no name)."""
    body = layer_of(f)
    return None if body is None else name_of(body)


def fields_of(block: s.Block) -> list[s.Field]:
    return [f for f in block.items if isinstance(f, s.Field)]


def last_top(items: Sequence[s.Field]) -> str | None:
    """The blob an omitted bottom after `items` reads: the last layer's first top."""
    for f in reversed(items):
        body = layer_of(f)
        if body is not None:
            tops = tops_of(body)
            if tops:
                return tops[0]
        elif f.key == "input" and isinstance(f.value, s.Block) and name_of(f.value):
            return name_of(f.value)
    return None


# --------------------------------------------------------------------------- rewriting blocks


def map_blobs(block: s.Block, key: str, fn: Callable[[str], str]) -> s.Block:
    """Apply fn to every blob name in the block's `key` fields."""
    changed = False
    items: list[s.Item] = []
    for f in block.items:
        if isinstance(f, s.Field) and f.key == key:
            v = _map_scalars(f.value, fn)
            if v is not f.value:
                changed = True
                f = dataclasses.replace(f, value=v)
        items.append(f)
    return s.Block(tuple(items), block.span) if changed else block


def _map_scalars(v: s.Value, fn: Callable[[str], str]) -> s.Value:
    if isinstance(v, s.Scalar) and v.kind in ("string", "word"):
        new = fn(str(v.value))
        return v if new == v.value else s.Scalar(new, "string", v.span)
    if isinstance(v, s.ListValue):
        items = tuple(_map_scalars(i, fn) for i in v.items)
        if any(a is not b for a, b in zip(items, v.items, strict=True)):
            return s.ListValue(items, v.span)
    return v


def add_field(block: s.Block, key: str, value: s.Value) -> s.Block:
    """Add a field after the block's name/type/bottom fields (where a reader looks)."""
    items = list(block.items)
    at = 0
    for idx, f in enumerate(items):
        if isinstance(f, s.Field) and f.key in ("name", "type", "bottom"):
            at = idx + 1
    items.insert(at, s.Field(key, value, value.span, value.span))
    return s.Block(tuple(items), block.span)


def set_fields(block: s.Block, new: Sequence[s.Field]) -> s.Block:
    """Each key in `new` replaces all of block's occurrences of it, at the first one."""
    keys = {f.key for f in new}
    items: list[s.Item] = []
    placed: set[str] = set()
    for f in block.items:
        if isinstance(f, s.Field) and f.key in keys:
            if f.key not in placed:
                placed.add(f.key)
                items.extend(n for n in new if n.key == f.key)
            continue
        items.append(f)
    items.extend(n for n in new if n.key not in placed)
    return s.Block(tuple(items), block.span)
