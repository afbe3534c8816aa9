"""Stage 2: text -> :class:`syntax.File`, with every node's span; syntax errors as diagnostics."""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import limits
from . import syntax as s
from .diagnostics import ParseError, Span, remember_source
from .files import read_text

_TOKEN_WORDS: dict[str, str | tuple[str, ...]] = {
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LPAR": "'('",
    "RPAR": "')'",
    "COLON": "':'",
    "_COMMA": "','",
    "_SEMI": "';'",
    "EQUAL": "'='",
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "VAR": "a $variable",
    "MINUS": "'-'",
    "PLUS": "'+'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "WHERE": ("'after'", "'before'"),
    "$END": "end of file",
}


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)


def _join(a: Span, b: Span) -> Span:
    return Span(a.path, a.line, a.col, b.end_line, b.end_col)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def unquote(text: str) -> str:
    """Decode a quoted string literal with C-style escapes (protobuf text format)."""
    body = text[1:-1]
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def number(text: str) -> int | float:
    t = text.rstrip("fF")
    if t != text or any(c in t for c in ".eE"):
        return float(t)
    return int(t)


#: What a rule's callback gets: its tokens and the nodes its sub-rules made (``None`` for
#: an absent optional part). Named here: inside the class ``list`` is the rule's callback.
_Children = list[Any]
_Tokens = list[Token]


class _ToSyntax(Transformer[Token, s.File]):
    """Builds syntax nodes while the LALR parser reduces (no intermediate lark tree).

    Lark's inline transformers get no `meta`, so spans are joined from the tokens and
    child nodes; that is why braces, brackets and ')' are named terminals in the grammar.
    """

    @property
    def path(self) -> str:
        return _PATH.get()

    def tok(self, t: Token) -> Span:
        return _tok_span(self.path, t)

    def start(self, items: _Children) -> s.File:
        span = _join(items[0].span, items[-1].span) if items else Span(self.path, 1, 1)
        return s.File(self.path, tuple(items), span)

    def key(self, children: _Tokens) -> tuple[str, Span]:
        tok = children[0]
        return (str(tok), self.tok(tok))

    def field(self, children: _Children) -> s.Field:
        (key, key_span), value = children
        return s.Field(key, value, _join(key_span, value.span), key_span)

    block = field

    def body(self, children: _Children) -> s.Block:
        lb, *items, rb = children
        return s.Block(tuple(items), _join(self.tok(lb), self.tok(rb)))

    def import_stmt(self, children: _Tokens) -> s.Import:
        kw, path = children
        return s.Import(unquote(path), _join(self.tok(kw), self.tok(path)))

    def let_stmt(self, children: _Children) -> s.Let:
        kw, name, value = children
        return s.Let(str(name), value, _join(self.tok(kw), value.span))

    def repeat_stmt(self, children: _Children) -> s.Repeat:
        kw, count, _, var, body = children
        var_name = str(var) if var is not None else None
        return s.Repeat(count, var_name, body, _join(self.tok(kw), body.span))

    def group_def(self, children: _Children) -> s.GroupDef:
        kw, name, *rest = children
        body = rest[-1]
        params = tuple(p for p in rest[:-1] if p is not None)
        return s.GroupDef(str(name), params, body, _join(self.tok(kw), body.span))

    def param(self, children: _Children) -> s.Param:
        name, default = children
        end = default.span if default is not None else self.tok(name)
        return s.Param(str(name), default, _join(self.tok(name), end))

    def replace_stmt(self, children: _Children) -> s.Replace:
        kw, target, body = children
        return s.Replace(unquote(target), body, _join(self.tok(kw), body.span))

    def update_stmt(self, children: _Children) -> s.Update:
        kw, target, body = children
        return s.Update(unquote(target), body, _join(self.tok(kw), body.span))

    def remove_stmt(self, children: _Tokens) -> s.Remove:
        kw, target = children
        return s.Remove(unquote(target), _join(self.tok(kw), self.tok(target)))

    def insert_stmt(self, children: _Children) -> s.Insert:
        kw, where, target, body = children
        return s.Insert(str(where), unquote(target), body, _join(self.tok(kw), body.span))

    # values
    def number(self, children: _Tokens) -> s.Scalar:
        (t,) = children
        text = str(t)
        cap = _INT_DIGITS.get()
        if len(text) > cap and text.isdigit():  # before int(): its cost grows with the digits
            raise limits.exceeded(
                "INT_DIGITS", f"an integer literal of {len(text):,} digits", cap,
                self.tok(t), "write a float (1e300)")
        v = number(text)
        return s.Scalar(v, "float" if isinstance(v, float) else "int", self.tok(t))

    def string(self, children: _Tokens) -> s.Scalar:
        (t,) = children
        return s.Scalar(unquote(str(t)), "string", self.tok(t))

    def word(self, children: _Tokens) -> s.Scalar:
        (t,) = children
        return s.Scalar(str(t), "word", self.tok(t))

    def var(self, children: _Tokens) -> s.Var:
        (t,) = children
        return s.Var(str(t)[1:], self.tok(t))

    def call(self, children: _Children) -> s.Call:
        name, *args, rpar = children
        span = _join(self.tok(name), self.tok(rpar))
        return s.Call(str(name), tuple(a for a in args if a is not None), span)

    def list(self, children: _Children) -> s.ListValue:
        lb, *items, rb = children
        span = _join(self.tok(lb), self.tok(rb))
        return s.ListValue(tuple(c for c in items if c is not None), span)

    def neg(self, children: _Children) -> s.Value:
        minus, v = children
        span = _join(self.tok(minus), v.span)
        if isinstance(v, s.Scalar) and v.kind in ("int", "float") and not isinstance(v.value, str):
            return s.Scalar(-v.value, v.kind, span)
        return s.Neg(v, span)

    def expr(self, children: _Children) -> s.Value:
        """Operands and operators as written, folded by precedence (left-associative)."""
        operands = children[0::2]
        ops = [str(t) for t in children[1::2]]
        return _fold(operands, ops)

    def unary(self, children: _Children) -> s.Value:  # `+x`
        operand: s.Value = children[1]
        return operand


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2}


def _fold(operands: list[s.Value], ops: list[str]) -> s.Value:
    """Shunting-yard over a flat operand/operator list."""
    out = [operands[0]]
    stack: list[str] = []

    def apply() -> None:
        op = stack.pop()
        right, left = out.pop(), out.pop()
        out.append(s.BinOp(op, left, right, _join(left.span, right.span)))

    for op, operand in zip(ops, operands[1:], strict=True):
        while stack and _PRECEDENCE[stack[-1]] >= _PRECEDENCE[op]:
            apply()
        stack.append(op)
        out.append(operand)
    while stack:
        apply()
    return out[0]


#: The file being parsed, for the spans the shared transformer makes: a context variable,
#: so parses in several threads (or one inside another) each see their own.
_PATH: ContextVar[str] = ContextVar("netdsl_parse_path", default="<string>")
#: The INT_DIGITS limit, read once per parse.
_INT_DIGITS: ContextVar[int] = ContextVar("netdsl_int_digits", default=400)
_TRANSFORMER = _ToSyntax()


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark.open(
        "grammar.lark", rel_to=__file__, parser="lalr", maybe_placeholders=True,
        transformer=_TRANSFORMER,
    )


def _words(terminal: str) -> tuple[str, ...]:
    """How an expected terminal reads in a message: a keyword as itself, in quotes."""
    if terminal.startswith("KW_"):
        return (f"'{terminal[3:].lower()}'",)
    word = _TOKEN_WORDS.get(terminal, terminal)
    return (word,) if isinstance(word, str) else word


def _expected_words(expected: Iterable[str]) -> str:
    words = sorted({w for e in expected for w in _words(e)})
    if len(words) > 6:
        return "a field, a block or a statement" if "a name" in words else ", ".join(words[:6])
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def parse(text: str, path: str) -> s.File:
    """Parse .net or prototxt text. Raises ParseError at the offending line and column.

    The nesting depth is checked first (:func:`check_depth`), so that nothing that walks
    the tree by recursion later (here or in any later stage) can run out of stack."""
    remember_source(path, text)
    walk = check_depth(text, path)
    file = _parse(text, path)
    if walk:
        _check_tree_depth(file)
    return file


def _parse(text: str, path: str) -> s.File:
    parser = _parser()
    token = _PATH.set(path)
    digits = _INT_DIGITS.set(limits.value("INT_DIGITS"))
    # The parser allocates tens of thousands of small acyclic objects; the cyclic garbage
    # collector would scan them all several times over for nothing.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        # With a transformer, the LALR parser returns what _ToSyntax.start made (lark types
        # it as a tree).
        return cast(s.File, parser.parse(text))
    except UnexpectedInput as e:
        raise _syntax_error(e, path, text) from None
    finally:
        _PATH.reset(token)
        _INT_DIGITS.reset(digits)
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- depth

#: What the depth scan looks at: strings and comments (skipped whole, so that a bracket
#: in them does not count), brackets, and operator characters.
_SCAN = re.compile(r"""\"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|#[^\n]*|[][(){}]|[-+*/%]""")


def _depth_error(span: Span, limit: int) -> limits.LimitError:
    return limits.exceeded("DEPTH", "nesting too deep", limit, span,
                           "split it with let",
                           " levels")


def check_depth(text: str, path: str) -> bool:
    """Refuse text whose brackets nest deeper than the DEPTH limit, at the first bracket
    past it, by one linear scan before parsing. True if the tree may still be too deep
    (operators nest too: ``1+1+...+1`` is a chain of operations), so that
    :func:`_check_tree_depth` must walk it."""
    limit = limits.value("DEPTH")
    depth = deepest = ops = 0
    for m in _SCAN.finditer(text):
        c = text[m.start()]
        if c in "([{":
            depth += 1
            if depth > limit:
                at = m.start()
                line = text.count("\n", 0, at) + 1
                col = at - text.rfind("\n", 0, at)
                raise _depth_error(Span(path, line, col, line, col + 1), limit)
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth = max(depth - 1, 0)
        elif c in "-+*/%":
            ops += 1
    return deepest + ops > limit


def _children(node: object) -> tuple[object, ...]:
    """The nodes directly inside a syntax node (none for a leaf)."""
    if isinstance(node, s.Field | s.Let):
        return (node.value,)
    if isinstance(node, s.Block | s.File):
        return node.items
    if isinstance(node, s.ListValue):
        return node.items
    if isinstance(node, s.BinOp):
        return (node.left, node.right)
    if isinstance(node, s.Neg):
        return (node.operand,)
    if isinstance(node, s.Call):
        return node.args
    if isinstance(node, s.Repeat):
        return (node.count, node.body)
    if isinstance(node, s.GroupDef):
        return (*(p.default for p in node.params if p.default is not None), node.body)
    if isinstance(node, s.Replace | s.Update | s.Insert):
        return (node.body,)
    return ()


_NESTING = (s.Block, s.ListValue, s.BinOp, s.Neg, s.Call)


def _check_tree_depth(file: s.File) -> None:
    """The exact depth of the tree, with an explicit stack (no recursion): every block,
    list, call and operation is a level. Reports the first node past the limit."""
    limit = limits.value("DEPTH")
    todo: list[tuple[object, int]] = [(file, 0)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, _NESTING):
            depth += 1
            if depth > limit:
                raise _depth_error(node.span, limit)
        todo.extend((c, depth) for c in _children(node))


def _syntax_error(e: UnexpectedInput, path: str, text: str) -> ParseError:
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        opened = text.count("{") - text.count("}")
        hint = f"{opened} '{{' not closed" if opened > 0 else None
        exp = _expected_words(e.expected) if getattr(e, "expected", None) else "more input"
        return ParseError(f"unexpected end of file, expected {exp}", Span(path, line, col), hint)
    if isinstance(e, UnexpectedToken):
        tok = e.token
        span = _tok_span(path, tok)
        got = repr(str(tok))
        hint = None
        if tok.type == "RBRACE":
            hint = "this '}' has no matching '{'"
        elif tok.type in ("NAME", "STRING", "NUMBER") and "COLON" in e.expected:
            hint = "a field needs ':' between its name and its value"
        return ParseError(f"unexpected {got}, expected {_expected_words(e.expected)}", span, hint)
    if isinstance(e, UnexpectedCharacters):
        ch = text.splitlines()[line - 1][col - 1:col] if line else "?"
        hint = None
        if ch == '"' or ch == "'":
            hint = "a string must be closed on the same line"
        span = Span(path, line, col, line, col + 1)
        return ParseError(f"unexpected character {ch!r}", span, hint)
    return ParseError(str(e), Span(path, line, col))


def parse_file(path: str | os.PathLike[str]) -> s.File:
    """Read and parse a file; a missing or unreadable file is a diagnostic, not a traceback."""
    p = Path(path)
    return parse(read_text(p, "spec file", "spec"), str(p))
