"""Variables and expressions: scopes and ``let``, evaluating an expression to a literal,
arithmetic, calls of the built-in functions (``functions.py``), ``${...}`` interpolation,
and the iterations of a ``repeat`` (their count and each one's scope: ``groups.py``
repeats layers with them, :meth:`Evaluator.eval_block` repeats fields).

Lets are evaluated lazily, once, in the scope that defined them, with cycle detection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache

from .. import limits
from .. import syntax as s
from ..diagnostics import NetdslError, Span, SpecError, did_you_mean
from ..parse import parse
from .common import add_note, head_span, misplaced
from .functions import FUNCTIONS, kind_of, number_of, scalar, text_of

#: The defaults of the REPEAT and ITERATIONS limits (``limits.py``; NETDSL_MAX_... raise them).
MAX_REPEAT = limits.LIMITS["REPEAT"].default
MAX_ITERATIONS = limits.LIMITS["ITERATIONS"].default

#: Called on each evaluated field of a block: (the field as written, its value) -> value.
Hook = Callable[[s.Field, s.Value], s.Value]


# --------------------------------------------------------------------------- scopes


class Binding:
    """A variable: a value, or an expression evaluated on first use in its own scope."""

    __slots__ = ("name", "expr", "scope", "value", "busy", "fail", "span")

    def __init__(self, name: str, value: s.Value | None = None, expr: s.Value | None = None,
                 scope: Scope | None = None, span: Span | None = None,
                 fail: Callable[[Span], NetdslError] | None = None) -> None:
        self.name = name
        self.value = value
        self.expr = expr
        self.scope = scope
        self.busy = False
        self.fail = fail
        self.span = span


class Scope:
    __slots__ = ("vars", "parent")

    def __init__(self, parent: Scope | None = None) -> None:
        self.vars: dict[str, Binding] = {}
        self.parent = parent

    def find(self, name: str) -> Binding | None:
        sc: Scope | None = self
        while sc is not None:
            b = sc.vars.get(name)
            if b is not None:
                return b
            sc = sc.parent
        return None

    def names(self) -> list[str]:
        out: list[str] = []
        sc: Scope | None = self
        while sc is not None:
            out.extend(sc.vars)
            sc = sc.parent
        return out


def _respan(v: s.Value, span: Span) -> s.Value:
    if isinstance(v, s.Scalar):  # the hot path: direct constructors, not dataclasses.replace
        return s.Scalar(v.value, v.kind, span)
    if isinstance(v, s.ListValue):
        return s.ListValue(v.items, span)
    if isinstance(v, s.Block):
        return s.Block(v.items, span)
    return dataclasses.replace(v, span=span)


# --------------------------------------------------------------------------- parsing snippets


def _shift(v: s.Value, fn: Callable[[Span], Span], words_are_vars: bool) -> s.Value:
    """Re-locate an expression parsed from a snippet; optionally read bare words as $vars."""
    if isinstance(v, s.Scalar):
        if words_are_vars and v.kind == "word":
            return s.Var(str(v.value), fn(v.span))
        return s.Scalar(v.value, v.kind, fn(v.span))
    if isinstance(v, s.Var):
        return s.Var(v.name, fn(v.span))
    if isinstance(v, s.ListValue):
        return s.ListValue(tuple(_shift(i, fn, words_are_vars) for i in v.items), fn(v.span))
    if isinstance(v, s.BinOp):
        return s.BinOp(v.op, _shift(v.left, fn, words_are_vars),
                       _shift(v.right, fn, words_are_vars), fn(v.span))
    if isinstance(v, s.Neg):
        return s.Neg(_shift(v.operand, fn, words_are_vars), fn(v.span))
    if isinstance(v, s.Call):
        return s.Call(v.func, tuple(_shift(a, fn, words_are_vars) for a in v.args), fn(v.span))
    return _respan(v, fn(v.span))


def parse_expr(code: str, base: Span, col0: int, words_are_vars: bool) -> s.Value:
    """Parse one expression from `code`, which starts at column col0 of base's line."""
    def move(sp: Span) -> Span:
        return Span(base.path, base.line, col0 + sp.col - 4, base.line,
                    col0 + max(sp.end_col, sp.col) - 4)

    try:
        f = parse("_: " + code, "<expression>")
    except limits.LimitError as e:
        raise limits.LimitError(e.message, move(e.span), e.hint) from None
    except NetdslError as e:
        raise SpecError(f"bad expression: {e.message}", move(e.span), e.hint) from None
    if len(f.items) != 1 or not isinstance(f.items[0], s.Field) \
            or isinstance(f.items[0].value, s.Block):
        raise SpecError("expected a single expression", move(f.span))
    return _shift(f.items[0].value, move, words_are_vars)


@lru_cache(maxsize=4096)
def _interp_expr(code: str, span: Span, at: int) -> s.Value:
    if not code.strip():
        raise SpecError("empty '${}' in string", _sub(span, at, 3))
    return parse_expr(code, span, span.col + at + 3, True)


def _sub(span: Span, at: int, n: int) -> Span:
    col = span.col + 1 + at
    return Span(span.path, span.line, col, span.line, col + n)


# --------------------------------------------------------------------------- the evaluator


#: The arithmetic operators on numbers: the verb for error messages and the operation.
_OPS: dict[str, tuple[str, Callable[[int | float, int | float], int | float]]] = {
    "+": ("add", lambda a, b: a + b),
    "-": ("subtract", lambda a, b: a - b),
    "*": ("multiply", lambda a, b: a * b),
    "/": ("divide", lambda a, b: a / b),
    "//": ("floor-divide", lambda a, b: a // b),
    "%": ("take the remainder of", lambda a, b: a % b),
}


class Evaluator:
    """Evaluates expressions in scopes; `globals` holds the import tree's lets.

    `groups` (the defined groups) only improves the hints of some errors.
    """

    def __init__(self, groups: Mapping[str, s.GroupDef]) -> None:
        self.globals = Scope()
        self.groups = groups
        self.evaluating: list[Binding] = []
        self.n_iterations = 0
        #: How deep evaluation is now: operations, lists, blocks, calls and variables being
        #: evaluated, nested. Bounded by the DEPTH limit, so Python's stack is too.
        self.depth = 0
        self.max_depth = limits.value("DEPTH")
        self.max_bits = limits.value("INT_BITS")
        self.max_chars = limits.value("STRING_LENGTH")
        self.max_size = limits.value("VALUE_SIZE")
        self.max_digits = limits.value("INT_DIGITS")
        self.max_repeat = limits.value("REPEAT", MAX_REPEAT)
        self.max_iterations = limits.value("ITERATIONS", MAX_ITERATIONS)
        #: id(list or block value) -> (the value, its depth, its size as expanded): values
        #: share parts (``[$x, $x]``), so each part is measured once.
        self._measured: dict[int, tuple[s.Value, int, int]] = {}

    def define(self, lets: Mapping[str, s.Let]) -> None:
        """Bind the top-level lets (evaluated on first use)."""
        for let in lets.values():
            self.globals.vars[let.name] = Binding(let.name, expr=let.value, scope=self.globals,
                                                  span=let.span)

    def check_globals(self, path: str) -> None:
        """Evaluate every top-level let, so that an error in an unused one is reported."""
        for b in list(self.globals.vars.values()):
            self.lookup(s.Var(b.name, b.span or Span(path)), self.globals)

    def lookup(self, var: s.Var, scope: Scope) -> s.Value:
        b = scope.find(var.name)
        if b is None:
            names = scope.names()
            hint = did_you_mean(var.name, names)
            if hint is None:
                hint = (f"define it with: let {var.name} = ..." if var.name not in self.groups
                        else f"'{var.name}' is a group; use it as a layer type")
            raise SpecError(f"undefined variable '${var.name}'", var.span, hint)
        if b.value is None:
            if b.fail is not None:
                raise b.fail(var.span)
            if b.busy:
                start = self.evaluating.index(b)
                chain = " -> ".join("$" + x.name for x in self.evaluating[start:] + [b])
                raise SpecError(f"variables depend on each other in a cycle: {chain}", var.span,
                                "a variable cannot be defined in terms of itself")
            b.busy = True
            self.evaluating.append(b)
            self._enter(var.span)
            try:
                assert b.expr is not None and b.scope is not None
                value = self.eval(b.expr, b.scope)
                self.check_size(value, b.span or var.span)
                b.value = value
            finally:
                b.busy = False
                self.evaluating.pop()
                self.depth -= 1
        return _respan(b.value, var.span)

    def _enter(self, span: Span) -> None:
        """One level deeper; refused past the DEPTH limit (a let chain counts too)."""
        self.depth += 1
        if self.depth > self.max_depth:
            self.depth -= 1
            chain = len(self.evaluating)
            e = limits.exceeded(
                "DEPTH", "nesting too deep" + (
                    f" through {chain} variables" if chain > 1 else ""), self.max_depth, span,
                "shorten the chain of lets", " levels")
            if chain > 1:
                first = self.evaluating[0]
                e.with_note(f"while evaluating ${first.name}", first.span)
            raise e

    def check_size(self, v: s.Value, span: Span) -> None:
        """Refuse a list or block value nested too deep or too large once expanded."""
        if not isinstance(v, s.ListValue | s.Block):
            return
        depth, size = self._measure(v)
        if depth > self.max_depth:
            raise limits.exceeded("DEPTH", f"a value nested {depth} levels deep",
                                  self.max_depth, span, "each list or block in another "
                                  "counts", " levels")
        if size > self.max_size:
            raise limits.exceeded("VALUE_SIZE", f"a value of {size:,} items (as expanded)",
                                  self.max_size, span)

    def _measure(self, root: s.ListValue | s.Block) -> tuple[int, int]:
        """(depth, size as expanded) of a list or block value, with an explicit stack."""
        memo = self._measured
        hit = memo.get(id(root))
        if hit is not None:
            return hit[1], hit[2]
        todo: list[tuple[s.ListValue | s.Block, bool]] = [(root, False)]
        while todo:
            node, ready = todo.pop()
            if id(node) in memo:
                continue
            kids = node.items if isinstance(node, s.ListValue) else tuple(
                i.value for i in node.items if isinstance(i, s.Field))
            inner = [k for k in kids if isinstance(k, s.ListValue | s.Block)]
            if not ready:
                todo.append((node, True))
                todo.extend((k, False) for k in inner if id(k) not in memo)
                continue
            depth = 1 + max((memo[id(k)][1] for k in inner), default=0)
            size = 1 + len(kids) - len(inner) + sum(memo[id(k)][2] for k in inner)
            memo[id(node)] = (node, depth, size)
        _, depth, size = memo[id(root)]
        return depth, size

    def eval(self, v: s.Value, scope: Scope) -> s.Value:
        """An expression -> a literal (Scalar, ListValue or Block of literals)."""
        if isinstance(v, s.Scalar):
            if v.kind == "string" and "${" in str(v.value):
                return s.Scalar(self.interpolate(v, scope), "string", v.span)
            return v
        if isinstance(v, s.Var):
            return self.lookup(v, scope)
        self._enter(v.span)
        try:  # one frame per level: the cases are inline, not in a helper
            if isinstance(v, s.ListValue):
                return s.ListValue(tuple(self.eval(i, scope) for i in v.items), v.span)
            if isinstance(v, s.Block):
                return self.eval_block(v, scope)
            if isinstance(v, s.Neg):
                x = self.eval(v.operand, scope)
                num = number_of(x)
                if num is None and isinstance(x, s.Scalar) and x.kind == "word" and str(
                        x.value).lower() in ("inf", "infinity"):
                    return s.Scalar(f"-{x.value}", "word", v.span)  # protobuf's -inf
                if num is None:
                    raise SpecError(f"cannot negate {kind_of(x)}", v.span)
                return scalar(-num, v.span)
            if isinstance(v, s.BinOp):
                return self.binop(v, scope)
            if isinstance(v, s.Call):
                return self.call(v, scope)
        finally:
            self.depth -= 1
        raise AssertionError(f"not a value: {v!r}")

    def binop(self, v: s.BinOp, scope: Scope) -> s.Value:
        a, b = self.eval(v.left, scope), self.eval(v.right, scope)
        if v.op == "+":
            if isinstance(a, s.Scalar) and isinstance(b, s.Scalar) \
                    and a.kind == b.kind == "string":
                self.check_length(len(str(a.value)) + len(str(b.value)), v.span)
                return s.Scalar(str(a.value) + str(b.value), "string", v.span)
            if isinstance(a, s.ListValue) and isinstance(b, s.ListValue):
                size = self._measure(a)[1] + self._measure(b)[1] - 1
                if size > self.max_size:
                    raise limits.exceeded("VALUE_SIZE", f"a list of {size:,} items (as "
                                          "expanded)", self.max_size, v.span)
                return s.ListValue(a.items + b.items, v.span)
        verb, fn = _OPS[v.op]
        na, nb = number_of(a), number_of(b)
        if na is not None and nb is not None:
            self.check_bits(v.op, na, nb, v.span)
            try:
                return scalar(fn(na, nb), v.span)
            except ZeroDivisionError:
                raise SpecError("division by zero", v.span) from None
            except OverflowError:
                raise SpecError("the result is too large", v.span) from None
        hint = None
        kinds = {getattr(a, "kind", ""), getattr(b, "kind", "")}
        if v.op == "+" and "string" in kinds and kinds & {"int", "float"}:
            hint = 'turn the number into a string with str(...), or write "text${...}"'
        elif "word" in kinds:
            hint = "a bare word is an enum value, not a variable; write $name for a variable"
        raise SpecError(f"cannot {verb} {kind_of(a)} and {kind_of(b)} with '{v.op}'", v.span, hint)

    def check_length(self, n: int, span: Span) -> None:
        """Refuse a string of n characters before it is made."""
        if n > self.max_chars:
            raise limits.exceeded("STRING_LENGTH", f"a string of {n:,} characters",
                                  self.max_chars, span)

    def check_bits(self, op: str, a: int | float, b: int | float, span: Span) -> None:
        """Refuse an integer product or sum past the INT_BITS limit before computing it
        (a product has at most the bits of both factors, a sum one more than the larger)."""
        if not isinstance(a, int) or not isinstance(b, int) or op not in "+-*":
            return
        ba, bb = abs(a).bit_length(), abs(b).bit_length()
        bits = ba + bb if op == "*" else max(ba, bb) + 1
        if bits > self.max_bits and (op != "*" or (a and b)):
            raise limits.exceeded("INT_BITS", f"an integer of up to {bits:,} bits",
                                  self.max_bits, span, "use floats for huge numbers")

    def call(self, v: s.Call, scope: Scope) -> s.Value:
        fn = FUNCTIONS.get(v.func)
        if fn is None:
            hint = did_you_mean(v.func, FUNCTIONS)
            if v.func in self.groups:
                hint = f"'{v.func}' is a group: use it as a layer type, type: {v.func}(...)"
            raise SpecError(f"unknown function '{v.func}'", head_span(v.span, v.func),
                            hint or "functions: " + ", ".join(FUNCTIONS))
        args = [self.eval(a, scope) for a in v.args]
        try:
            out = fn(args, v.span)
        except OverflowError:
            raise SpecError("the result is too large", v.span) from None
        if isinstance(out, s.Scalar):
            if isinstance(out.value, int) and out.value.bit_length() > self.max_bits:
                raise limits.exceeded("INT_BITS", f"an integer of {out.value.bit_length():,} "
                                      "bits", self.max_bits, v.span)
            if isinstance(out.value, str):
                self.check_length(len(out.value), v.span)
        return out

    def interpolate(self, v: s.Scalar, scope: Scope) -> str:
        text = str(v.value)
        out: list[str] = []
        i = n = 0
        while True:
            j = text.find("${", i)
            if j < 0:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:j])
            n += j - i
            k = text.find("}", j + 2)
            if k < 0:
                raise SpecError("unterminated '${' in string", _sub(v.span, j, 2),
                                "close the expression with '}'")
            expr = _interp_expr(text[j + 2:k], v.span, j)
            value = self.eval(expr, scope)
            if isinstance(value, s.Scalar) and isinstance(value.value, str):
                self.check_length(n + len(value.value) + len(text) - k - 1, v.span)
            part = text_of(value, expr.span)
            n += len(part)
            out.append(part)
            i = k + 1

    def local_scope(self, items: Sequence[s.Item], parent: Scope) -> Scope:
        """The scope of a { } body: its own lets over `parent` (parent if it has none)."""
        lets = [i for i in items if isinstance(i, s.Let)]
        if not lets:
            return parent
        sc = Scope(parent)
        for let in lets:
            if let.name in sc.vars:
                raise SpecError(f"variable '{let.name}' is defined twice", let.span,
                                notes=[("first defined here", sc.vars[let.name].span)])
            sc.vars[let.name] = Binding(let.name, expr=let.value, scope=sc, span=let.span)
        return sc

    def iterations(self, rep: s.Repeat, scope: Scope) -> Iterator[tuple[Scope, s.Note]]:
        """Each iteration of a repeat: the body's scope and the note naming the iteration."""
        n = self.eval(rep.count, scope)
        num = number_of(n)
        if num is None or not isinstance(n, s.Scalar) or n.kind != "int" or num < 1:
            got = num if num is not None else kind_of(n)
            raise SpecError(f"repeat count must be a positive integer, got {got}", rep.count.span,
                            "use int(...) to round a float"
                            if isinstance(n, s.Scalar) and n.kind == "float" else None)
        count = int(num)
        if count > self.max_repeat:
            raise SpecError(f"runaway expansion: repeat count {count} is over the limit of "
                            f"{self.max_repeat}", rep.count.span,
                            "raise it with NETDSL_MAX_REPEAT=N if the spec is right")
        for i in range(count):
            self.n_iterations += 1
            if self.n_iterations > self.max_iterations:
                raise SpecError(f"runaway expansion: more than {self.max_iterations} repeat "
                                "iterations", rep.count.span, "raise it with "
                                "NETDSL_MAX_ITERATIONS=N if the spec is right")
            sc = Scope(scope)
            if rep.var is not None:
                sc.vars[rep.var] = Binding(rep.var, value=s.Scalar(i, "int", rep.span))
                note = f"expanded from repeat with {rep.var} = {i}"
            else:
                note = f"expanded from iteration {i} of repeat"
            yield self.local_scope(rep.body.items, sc), (note, rep.span)

    def eval_block(self, block: s.Block, scope: Scope, hook: Hook | None = None) -> s.Block:
        out: list[s.Item] = []
        self.eval_fields(block.items, self.local_scope(block.items, scope), hook, out)
        return s.Block(tuple(out), block.span)

    def eval_fields(self, items: Sequence[s.Item], scope: Scope, hook: Hook | None,
                    out: list[s.Item]) -> None:
        for it in items:
            if isinstance(it, s.Field):
                val = self.eval(it.value, scope)
                self.check_size(val, it.span)
                if hook is not None:
                    val = hook(it, val)
                out.append(s.Field(it.key, val, it.span, it.key_span, it.notes))
            elif isinstance(it, s.Repeat):
                for sc, note in self.iterations(it, scope):
                    try:
                        self.eval_fields(it.body.items, sc, hook, out)
                    except NetdslError as e:
                        raise add_note(e, note) from None
            elif not isinstance(it, s.Let):
                raise misplaced(it, "inside a block")
