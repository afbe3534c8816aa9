"""The syntax tree of a .net file: frozen dataclasses, each with the span it came from.

`parse.py` produces a :class:`File`; `caffe_compat.py` rewrites Caffe's forms inside it;
`resolve` turns it into a :class:`Spec`, which holds only fields with literal values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span

Note = tuple[str, Span]


@dataclass(frozen=True)
class Scalar:
    """A literal: kind is 'string', 'int', 'float' or 'word' (an enum word or true/false)."""

    value: str | int | float
    kind: str
    span: Span


@dataclass(frozen=True)
class ListValue:
    items: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Value
    right: Value
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Value
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Block:
    """A `{ ... }` body."""

    items: tuple[Item, ...]
    span: Span

    def fields(self, key: str) -> tuple[Field, ...]:
        return tuple(i for i in self.items if isinstance(i, Field) and i.key == key)

    def first(self, key: str) -> Field | None:
        for i in self.items:
            if isinstance(i, Field) and i.key == key:
                return i
        return None

    def scalar(self, key: str) -> str | int | float | None:
        f = self.first(key)
        if f is not None and isinstance(f.value, Scalar):
            return f.value.value
        return None


Value = Scalar | ListValue | Var | BinOp | Neg | Call | Block


@dataclass(frozen=True)
class Field:
    """`key: value` or `key { ... }` (then value is a Block).

    notes record where an expanded field came from (import, group, repeat).
    """

    key: str
    value: Value
    span: Span
    key_span: Span
    notes: tuple[Note, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True)
class Let:
    name: str
    value: Value
    span: Span


@dataclass(frozen=True)
class Repeat:
    count: Value
    var: str | None
    body: Block
    span: Span


@dataclass(frozen=True)
class Param:
    name: str
    default: Value | None
    span: Span


@dataclass(frozen=True)
class GroupDef:
    name: str
    params: tuple[Param, ...]
    body: Block
    span: Span


@dataclass(frozen=True)
class Replace:
    target: str
    body: Block
    span: Span


@dataclass(frozen=True)
class Update:
    target: str
    body: Block
    span: Span


@dataclass(frozen=True)
class Remove:
    target: str
    span: Span


@dataclass(frozen=True)
class Insert:
    where: str  # "after" | "before"
    target: str
    body: Block
    span: Span


Item = Field | Import | Let | Repeat | GroupDef | Replace | Update | Remove | Insert


@dataclass(frozen=True)
class File:
    path: str
    items: tuple[Item, ...]
    span: Span


@dataclass(frozen=True)
class Spec:
    """A resolved spec: top-level fields whose values are literals, lists and blocks only."""

    path: str
    items: tuple[Field, ...]
    #: imported files outside the root file's folder tree (``netdsl expand`` names them)
    outside_imports: tuple[str, ...] = ()

    @property
    def block(self) -> Block:
        return Block(self.items, Span(self.path))
