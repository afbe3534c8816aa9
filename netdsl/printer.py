"""Stage 6: a :class:`syntax.Spec` (or a whole :class:`syntax.File`) as readable .net text.

``parse(print_spec(x))`` equals ``x`` ignoring spans; tests check it on Caffe's files and
on random specs. Layout: two-space indent; a ``layer`` block always one field per line;
any other block whose fields are all non-blocks and fit in one line is written inline
(``param { lr_mult: 1 decay_mult: 1 }``); a blank line around every multi-line block.
Strings are double-quoted with C escapes, words bare, floats as Python's shortest
round-trip ``repr``. A word that is not a valid bare name (only possible in hand-built
trees) is written quoted, so it reads back as a string.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from . import syntax as s

INDENT = "  "
WIDTH = 88

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def print_spec(spec: s.Spec, tidy: bool = False) -> str:
    """A resolved spec as .net text; imports from outside the spec's folder tree are
    named in a comment above it. ``tidy`` (``netdsl expand``) writes computed numbers as
    a person would: a whole float as an integer (``24``, not ``24.0``) and the others
    without binary noise (``28.8``, not ``28.799999999999997``)."""
    head = "".join(f"# imported from outside {os.path.dirname(os.path.abspath(spec.path))}: "
                   f"{p}\n" for p in spec.outside_imports)
    items = tuple(_tidy_item(i) for i in spec.items) if tidy else spec.items
    return head + _top(items)


def tidy_number(v: float) -> int | float:
    """``24.0`` -> ``24``; ``28.799999999999997`` -> ``28.8`` (15 significant digits, the
    most a double always keeps; a number that needs all 17 keeps them)."""
    if v.is_integer() and abs(v) < 2**53:
        return int(v)
    if not (v == v and abs(v) != float("inf")):
        return v
    short = float(f"{v:.15g}")
    return int(short) if short.is_integer() and abs(short) < 2**53 else short


def _tidy(v: s.Value) -> s.Value:
    if isinstance(v, s.Scalar) and v.kind == "float" and isinstance(v.value, float):
        n = tidy_number(v.value)
        return s.Scalar(n, "int" if isinstance(n, int) else "float", v.span)
    if isinstance(v, s.ListValue):
        return s.ListValue(tuple(_tidy(i) for i in v.items), v.span)
    if isinstance(v, s.Block):
        return s.Block(tuple(_tidy_item(i) for i in v.items), v.span)
    return v


def _tidy_item(it: s.Item) -> s.Item:
    if isinstance(it, s.Field):
        return s.Field(it.key, _tidy(it.value), it.span, it.key_span, it.notes)
    return it


def print_file(file: s.File) -> str:
    """A whole file, statements and expressions included, as .net text."""
    return _top(file.items)


def quote(text: str) -> str:
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def _top(items: Sequence[s.Item]) -> str:
    out: list[str] = []
    prev_multi = False
    for it in items:
        lines = _item(it, 0)
        multi = len(lines) > 1
        if out and (multi or prev_multi):
            out.append("")
        out.extend(lines)
        prev_multi = multi
    return "\n".join(out) + "\n" if out else ""


def _scalar(v: s.Scalar) -> str:
    if v.kind == "string":
        return quote(str(v.value))
    if v.kind == "word":
        text = str(v.value)
        if text.startswith("-") and _NAME.match(text[1:]):
            return text  # -inf, as protobuf's text format writes it
        return text if _NAME.match(text) else quote(text)
    if isinstance(v.value, float):
        return repr(v.value)
    return str(v.value)


def expr(v: s.Value, min_prec: int = 0) -> str:
    """An expression or literal on one line, parenthesised only where needed."""
    if isinstance(v, s.Scalar):
        return _scalar(v)
    if isinstance(v, s.Var):
        return "$" + v.name
    if isinstance(v, s.ListValue):
        return "[" + ", ".join(expr(i) for i in v.items) + "]"
    if isinstance(v, s.Block):
        return _inline(v)
    if isinstance(v, s.Call):
        return f"{v.func}(" + ", ".join(expr(a) for a in v.args) + ")"
    if isinstance(v, s.Neg):
        text = "-" + expr(v.operand, 3)
        return f"({text})" if min_prec > 3 else text
    if isinstance(v, s.BinOp):
        p = _PREC[v.op]
        text = f"{expr(v.left, p)} {v.op} {expr(v.right, p + 1)}"
        return f"({text})" if p < min_prec else text
    raise TypeError(f"not a value: {v!r}")


def _inline(b: s.Block) -> str:
    if not b.items:
        return "{}"
    # the syntax ignores line breaks, so a multi-line item joins into one line
    return "{ " + " ".join(line.strip() for i in b.items for line in _item(i, 0)) + " }"


def _can_inline(key: str, b: s.Block, indent: int) -> bool:
    if key == "layer" or not all(isinstance(i, s.Field) and not isinstance(i.value, s.Block)
                                 for i in b.items):
        return False
    return len(INDENT * indent) + len(key) + len(_inline(b)) + 1 <= WIDTH


def _body(head: str, b: s.Block, indent: int) -> list[str]:
    pad = INDENT * indent
    if not b.items:
        return [f"{pad}{head} {{}}"]
    lines = [f"{pad}{head} {{"]
    for i in b.items:
        lines.extend(_item(i, indent + 1))
    lines.append(pad + "}")
    return lines


def _item(it: s.Item, indent: int) -> list[str]:
    pad = INDENT * indent
    if isinstance(it, s.Field):
        if isinstance(it.value, s.Block):
            if _can_inline(it.key, it.value, indent):
                return [f"{pad}{it.key} {_inline(it.value)}"]
            return _body(it.key, it.value, indent)
        return [f"{pad}{it.key}: {expr(it.value)}"]
    if isinstance(it, s.Import):
        return [f"{pad}import {quote(it.path)}"]
    if isinstance(it, s.Let):
        return [f"{pad}let {it.name} = {expr(it.value)}"]
    if isinstance(it, s.Repeat):
        var = f" as {it.var}" if it.var else ""
        return _body(f"repeat {expr(it.count)}{var}", it.body, indent)
    if isinstance(it, s.GroupDef):
        params = ", ".join(p.name if p.default is None else f"{p.name} = {expr(p.default)}"
                           for p in it.params)
        return _body(f"group {it.name}({params})", it.body, indent)
    if isinstance(it, s.Replace):
        return _body(f"replace {quote(it.target)}", it.body, indent)
    if isinstance(it, s.Update):
        return _body(f"update {quote(it.target)}", it.body, indent)
    if isinstance(it, s.Remove):
        return [f"{pad}remove {quote(it.target)}"]
    if isinstance(it, s.Insert):
        return _body(f"insert {it.where} {quote(it.target)}", it.body, indent)
    raise TypeError(f"not an item: {it!r}")
