"""Stage 5: :class:`syntax.File` -> :class:`syntax.Spec`: imports, variables, groups, edits.

The output is flat: top-level fields whose values are literals (scalars, lists and blocks
of literals). Nothing after this stage sees an import, a variable or a group.

Semantics
=========

**Imports.** ``import "x.net"`` is relative to the importing file's folder. All imports
are loaded first (``load(path, span)`` gets an absolute path); a cycle is an error at
the import statement that starts it (in the file imported again), showing the chain
(``a.net -> b.net -> a.net``) with a note at each further import in it,
and a file that cannot be read is an error at the import statement naming the resolved
path. Each file is resolved on its own (imports merged, then its own items expanded,
then its own edits applied), so an imported file's edits see only that file's layers.
Merging an importer over what it imports (imported items first, at their positions):

* a top-level non-block field replaces all imported fields with the same key;
* a ``layer {}`` whose name equals an imported layer's name replaces that layer at its
  position; if it says a phase (``phase:`` or ``include { phase }``) it replaces the
  imported layer(s) of that name and phase (or, if none, those without a phase). A name
  that is an imported group instance's (``t1``) stands for all its layers (``t1/...``),
  so a variant can re-instantiate an imported instance with other arguments;
* any other block merges field by field, recursively, into the imported blocks with the
  same key and the same ``name`` (none for ``solver {}``), with the same phase rule,
  except that an importer's block without a phase merges into every phase's block (so
  ``data { root: "/x" }`` changes the TRAIN and the TEST source at once). Inside a merged
  block a key (repeated or not) replaces all the imported occurrences of that key.

Variables (``let``), group definitions and the names they define are shared by the
whole import tree: the importer's ``let`` (and then ``--set``) overrides the imported
one *everywhere*, including inside the imported file's layers (late binding: that is
what makes a variant a few lines). Defining the same variable or group twice in one
file is an error.

**Expressions.** Lets are evaluated lazily, in any order, once, with cycle detection;
every top-level let is evaluated at the end so that an error in an unused one is still
reported. ``let`` inside any ``{ }`` body (a group, a repeat, a layer) is local to that
body. Arithmetic ``+ - * / // %`` and unary minus on ints and floats (``/`` always
gives a float, ``//`` floors), ``+`` also joins strings and lists. Functions:
``int round floor ceil min max abs str letter`` and the filler constructors
``constant gaussian uniform xavier msra bilinear positive_unitball``, which return a
filler block. ``letter(n)`` counts like spreadsheet columns: a..z, aa, ab, ...
In ``"conv${i + 1}"`` the text inside ``${...}`` is an expression in which a bare name is
a variable (``$i`` works too); its columns in error messages assume no escapes precede it
in the string.

**Groups.** ``group NAME(p1, p2 = default) { ... }`` is instantiated by a layer whose
type is NAME (``type: NAME`` with named arguments as fields, or ``type: NAME(a, b)``
positionally, or both). In the body: the params, ``$name`` (the instance's name),
``$bottom``/``$bottoms`` (its bottoms; ``$bottom`` defaults to the previous layer's first
top, as an omitted bottom does in ``build``), ``$top``/``$tops`` (default: its name).
Defaults are evaluated lazily in the group's scope, so they may use earlier params.
Naming is hygienic by *how a name is written*: an inner name or top written as a plain
literal (``name: "conv"``) is local and becomes ``inst/conv``; a literal inner bottom
naming a local name or top is prefixed the same way; anything computed -- interpolated
(``"${name}_branch2a"``) or taken from a variable (``$bottom``, ``$top``, an argument) --
is left as it is. That is how ``resnet50.net`` keeps Caffe's names (``res2a_branch2a``)
and how a body reads its input (``bottom: $bottom``). A computed inner name must itself
be unique per instance (include ``${name}``). The instance's output blob is the first top
of the body's last layer; a ``bottom: "inst"`` anywhere reads it (resolved at the very
end, so an importer may still replace the instance, and only where no layer makes a blob
called "inst"), and an explicit instance ``top:`` other than its name renames that blob.
The instance's ``devices``, ``phase``, ``include`` and ``exclude`` are copied onto every
inner layer that does not set its own (phase, include and exclude count as one setting).
Nesting deeper than 32 instances or making more than 100,000 layers is a "runaway
expansion" error.

**Repeat.** ``repeat N as i { ... }`` expands its items N times with ``$i`` = 0..N-1, at
top level, in group bodies, in insert bodies and inside any block (to repeat fields).
N must be a positive integer (at most 100,000).

**Edits** (``replace``, ``update``, ``remove``, ``insert``) run after the file's items are
expanded and merged with its imports, in file order, on the flat layer list; a target
name is interpolated and names every layer so called (Caffe's TRAIN/TEST pairs).
``replace`` keeps the old layer's wiring (name, bottom, top, devices, phase, include,
exclude -- unless the new body sets them) and takes the rest from its body; without a
``type`` it acts as ``update``; a group type makes it an instance wired in the old
layer's place. ``update`` replaces all occurrences of each key it sets (blocks are
replaced, not merged). ``remove`` rewires the readers of the removed layer's tops to its
bottoms, pairwise, up to and including the first layer that rewrites that blob in place
(which keeps its top and so takes over the blob). ``insert after``/``before`` chains the
new layers from the target's first top (after) or first bottom (before), fills each
missing top with the layer's name, and moves every later reader of that blob (the
target itself, for ``before``), in-place writers included, to the last new top.

**Errors** inside expanded code are raised at the span inside the group/repeat body, with
notes naming the instance and repeat iteration they were expanded from; layer fields
carry the same notes (``Field.notes``) for later stages.

``--set`` overrides (``overrides``): ``name=value`` replaces an existing let (value parsed
as an expression; text that does not parse is a string); ``a.b=value`` sets field ``b``
inside top-level block ``a`` (or, if there is none, the layer named ``a``; else the
block is created), the value parsed as a literal, else taken as a string.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from . import syntax as s
from .caffe_compat import upgrade
from .diagnostics import NetdslError, Span, SpecError, did_you_mean, remember_source, source_line
from .parse import parse, parse_file

Loader = Callable[[str, Span], s.File]

MAX_DEPTH = 32
MAX_LAYERS = 100_000
MAX_REPEAT = 100_000
MAX_ITERATIONS = 1_000_000
MAX_NOTES = 6

COMMON = ("devices", "phase", "include", "exclude")
PHASE_KEYS = ("phase", "include", "exclude")
WIRING = ("name", "bottom", "top", "devices", "phase", "include", "exclude")
RESERVED = ("name", "type", "bottom", "bottoms", "top", "tops")
EDITS = (s.Replace, s.Update, s.Remove, s.Insert)

_NO_OVERRIDES: Mapping[str, str] = MappingProxyType({})


# --------------------------------------------------------------------------- loading

_FILE_CACHE: dict[str, tuple[tuple[int, int], s.File]] = {}


def default_loader(path: str, span: Span) -> s.File:
    """Parse and upgrade an imported file, cached by path and modification time."""
    try:
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size)
    except OSError:
        key = (0, 0)
    hit = _FILE_CACHE.get(path)
    if hit is not None and hit[0] == key and key != (0, 0):
        return hit[1]
    file = upgrade(parse_file(path))
    _FILE_CACHE[path] = (key, file)
    return file


@dataclass
class _Node:
    file: s.File
    imports: list[tuple[s.Import, _Node]]


# --------------------------------------------------------------------------- scopes


class _Binding:
    """A variable: a value, or an expression evaluated on first use in its own scope."""

    __slots__ = ("name", "expr", "scope", "value", "busy", "fail", "span")

    def __init__(self, name: str, value: s.Value | None = None, expr: s.Value | None = None,
                 scope: _Scope | None = None, span: Span | None = None,
                 fail: Callable[[Span], NetdslError] | None = None) -> None:
        self.name = name
        self.value = value
        self.expr = expr
        self.scope = scope
        self.busy = False
        self.fail = fail
        self.span = span


class _Scope:
    __slots__ = ("vars", "parent")

    def __init__(self, parent: _Scope | None = None) -> None:
        self.vars: dict[str, _Binding] = {}
        self.parent = parent

    def find(self, name: str) -> _Binding | None:
        sc: _Scope | None = self
        while sc is not None:
            b = sc.vars.get(name)
            if b is not None:
                return b
            sc = sc.parent
        return None

    def names(self) -> list[str]:
        out: list[str] = []
        sc: _Scope | None = self
        while sc is not None:
            out.extend(sc.vars)
            sc = sc.parent
        return out


class _Chain:
    """The blob an omitted bottom reads (the previous layer's first top)."""

    __slots__ = ("cur", "fill")

    def __init__(self, cur: str | None, fill: bool = False) -> None:
        self.cur = cur
        self.fill = fill  # insert bodies: write the defaults into the layers


class _Inst:
    """The group instance whose body is being expanded (plain slots: made per instance)."""

    __slots__ = ("name", "group", "locals")

    def __init__(self, name: str, group: str, local_names: frozenset[str]) -> None:
        self.name = name
        self.group = group
        self.locals = local_names


class _Ctx:
    __slots__ = ("inst", "notes", "chain", "where")

    def __init__(self, inst: _Inst | None, notes: tuple[s.Note, ...], chain: _Chain,
                 where: str) -> None:
        self.inst = inst
        self.notes = notes
        self.chain = chain
        self.where = where  # "file" | "group" | "insert"


# --------------------------------------------------------------------------- small helpers


def _kind(v: s.Value) -> str:
    if isinstance(v, s.Scalar):
        return {"int": "an int", "float": "a float", "string": "a string"}.get(
            v.kind, f"the word '{v.value}'")
    if isinstance(v, s.ListValue):
        return "a list"
    return "a block"


def _num(v: s.Value) -> bool:
    return isinstance(v, s.Scalar) and v.kind in ("int", "float")


def _respan(v: s.Value, span: Span) -> s.Value:
    if isinstance(v, s.Scalar):  # the hot path: direct constructors, not dataclasses.replace
        return s.Scalar(v.value, v.kind, span)
    if isinstance(v, s.ListValue):
        return s.ListValue(v.items, span)
    if isinstance(v, s.Block):
        return s.Block(v.items, span)
    return dataclasses.replace(v, span=span)  # type: ignore[type-var]


def _with_note(f: s.Field, note: s.Note) -> s.Field:
    return dataclasses.replace(f, notes=f.notes + (note,))


_MORE = ("...", None)


def _note(e: NetdslError, note: s.Note) -> NetdslError:
    """Add an expansion note, keeping the innermost ones and the outermost one."""
    if len(e.notes) < MAX_NOTES:
        e.with_note(*note)
    elif e.notes[MAX_NOTES - 1] == _MORE:
        e.notes = e.notes[:-1] + (note,)
    else:
        e.notes = e.notes[:MAX_NOTES - 1] + (_MORE, note)
    return e


def _strs(v: s.Value) -> list[str]:
    items = v.items if isinstance(v, s.ListValue) else (v,)
    return [str(i.value) for i in items if isinstance(i, s.Scalar) and i.kind in ("string", "word")]


def _values(block: s.Block, key: str) -> list[str]:
    out: list[str] = []
    for f in block.fields(key):
        out.extend(_strs(f.value))
    return out


def _name(block: s.Block) -> str | None:
    v = block.scalar("name")
    return None if v is None else str(v)


def _tops(block: s.Block) -> list[str]:
    tops = _values(block, "top")
    if tops:
        return tops
    name = _name(block)
    return [name] if name is not None else []


def _is_layer(f: s.Field) -> bool:
    return f.key == "layer" and isinstance(f.value, s.Block)


def _phase(block: s.Block) -> str | None:
    v = block.scalar("phase")
    if v is not None:
        return str(v).upper()
    inc = block.first("include")
    if inc is not None and isinstance(inc.value, s.Block):
        p = inc.value.scalar("phase")
        if p is not None:
            return str(p).upper()
    return None


def _map_blobs(block: s.Block, key: str, fn: Callable[[str], str]) -> s.Block:
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


def _add_field(block: s.Block, key: str, value: s.Value) -> s.Block:
    """Add a field after the block's name/type/bottom fields (where a reader looks)."""
    items = list(block.items)
    at = 0
    for idx, f in enumerate(items):
        if isinstance(f, s.Field) and f.key in ("name", "type", "bottom"):
            at = idx + 1
    items.insert(at, s.Field(key, value, value.span, value.span))
    return s.Block(tuple(items), block.span)


def _set_fields(block: s.Block, new: Sequence[s.Field]) -> s.Block:
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


def _is_literal_name(v: s.Value) -> bool:
    """Written as a plain literal (so local to a group body), not computed."""
    return isinstance(v, s.Scalar) and (
        v.kind == "word" or (v.kind == "string" and "${" not in str(v.value)))


def _target_span(span: Span, target: str) -> Span:
    """The quoted target of an edit statement, found in the source line if we have it."""
    line = source_line(span.path, span.line) if span.line > 0 else None
    if line is not None:
        hits = [i for i in (line.find('"', span.col - 1), line.find("'", span.col - 1)) if i >= 0]
        if hits:
            i = min(hits)
            return Span(span.path, span.line, i + 1, span.line, i + 3 + len(target))
    return span


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


# --------------------------------------------------------------------------- expressions


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


def _parse_expr(code: str, base: Span, col0: int, words_are_vars: bool) -> s.Value:
    """Parse one expression from `code`, which starts at column col0 of base's line."""
    def move(sp: Span) -> Span:
        return Span(base.path, base.line, col0 + sp.col - 4, base.line,
                    col0 + max(sp.end_col, sp.col) - 4)

    try:
        f = parse("_: " + code, "<expression>")
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
    return _parse_expr(code, span, span.col + at + 3, True)


def _sub(span: Span, at: int, n: int) -> Span:
    col = span.col + 1 + at
    return Span(span.path, span.line, col, span.line, col + n)


def _text(v: s.Value, span: Span) -> str:
    if isinstance(v, s.Scalar):
        return repr(v.value) if isinstance(v.value, float) else str(v.value)
    raise SpecError(f"cannot put {_kind(v)} into a string", span)


def _check_args(fn: str, args: Sequence[s.Value], span: Span, lo: int, hi: int) -> None:
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}" if hi < 99 else f"at least {lo}"
        raise SpecError(f"{fn}() takes {want} argument(s), got {len(args)}", span)


def _number(fn: str, v: s.Value) -> int | float:
    if not _num(v):
        raise SpecError(f"{fn}() needs a number, got {_kind(v)}", v.span)
    return v.value  # type: ignore[union-attr, return-value]


def _scalar(x: int | float | str, span: Span) -> s.Scalar:
    if isinstance(x, str):
        return s.Scalar(x, "string", span)
    if isinstance(x, float) and not math.isfinite(x):
        raise SpecError("the result is not a finite number", span)
    return s.Scalar(x, "float" if isinstance(x, float) else "int", span)


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
        try:
            return _scalar(int(str(a.value)), span)
        except ValueError:
            raise SpecError(f"int() cannot read {a.value!r} as an integer", a.span) from None
    return _scalar(int(_number("int", a)), span)


def _f_round(args: Sequence[s.Value], span: Span) -> s.Value:
    _check_args("round", args, span, 1, 2)
    x = _number("round", args[0])
    if len(args) == 2:
        nd = _number("round", args[1])
        if not isinstance(nd, int):
            raise SpecError("round(): the number of digits must be an int", args[1].span)
        return _scalar(float(round(x, nd)), span)
    return _scalar(int(round(x)), span)


def _f_unary(fn: str, op: Callable[[int | float], int | float]) -> Callable[..., s.Value]:
    def call(args: Sequence[s.Value], span: Span) -> s.Value:
        _check_args(fn, args, span, 1, 1)
        return _scalar(op(_number(fn, args[0])), span)
    return call


def _f_minmax(fn: str, op: Callable[..., int | float]) -> Callable[..., s.Value]:
    def call(args: Sequence[s.Value], span: Span) -> s.Value:
        _check_args(fn, args, span, 1, 999)
        if len(args) == 1 and isinstance(args[0], s.ListValue):
            args = args[0].items
            if not args:
                raise SpecError(f"{fn}() of an empty list", span)
        return _scalar(op(_number(fn, a) for a in args), span)
    return call


def _f_str(args: Sequence[s.Value], span: Span) -> s.Value:
    _check_args("str", args, span, 1, 1)
    return s.Scalar(_text(args[0], args[0].span), "string", span)


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

_OPS: dict[str, tuple[str, Callable[[int | float, int | float], int | float]]] = {
    "+": ("add", lambda a, b: a + b),
    "-": ("subtract", lambda a, b: a - b),
    "*": ("multiply", lambda a, b: a * b),
    "/": ("divide", lambda a, b: a / b),
    "//": ("floor-divide", lambda a, b: a // b),
    "%": ("take the remainder of", lambda a, b: a % b),
}


# --------------------------------------------------------------------------- the resolver


def resolve(
    file: s.File,
    load: Loader | None = None,
    overrides: Mapping[str, str] = _NO_OVERRIDES,
) -> s.Spec:
    """Resolve imports, variables, groups, repeats and edits into a flat, literal Spec.

    `file` is already parsed and upgraded; `load(path, span)` returns the same for an
    import (an absolute path); `overrides` are the CLI's ``--set`` pairs.
    """
    # Expansion makes many small immutable nodes and no garbage worth collecting; the
    # cyclic GC would rescan them all again and again (2x slower at 100,000 layers).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Resolver(load or default_loader, file.path).run(file, overrides)
    finally:
        if was_enabled:
            gc.enable()


class _Resolver:
    def __init__(self, load: Loader, root: str) -> None:
        self.load = load
        self.root_dir = os.path.dirname(os.path.abspath(root))
        self.globals = _Scope()
        self.groups: dict[str, s.GroupDef] = {}
        self.aliases: dict[str, str] = {}  # group instance name -> its output blob
        self.evaluating: list[_Binding] = []
        self.instances: list[str] = []  # group names, outermost first
        self.layers = 0
        self.n_iterations = 0
        self._locals_cache: dict[int, frozenset[str]] = {}
        # id(layer field) -> (field, top-level instance that made it), for _merge
        self.units: dict[int, tuple[s.Field, str]] = {}

    def show(self, path: str) -> str:
        if path.startswith("<"):
            return path
        return os.path.relpath(os.path.abspath(path), self.root_dir)

    # ------------------------------------------------------------------ driver

    def run(self, file: s.File, overrides: Mapping[str, str]) -> s.Spec:
        tree = self.load_tree(file, [os.path.abspath(file.path)], [])
        lets: dict[str, s.Let] = {}
        self.collect(tree, lets)
        for let in lets.values():
            self.globals.vars[let.name] = _Binding(let.name, expr=let.value, scope=self.globals,
                                                   span=let.span)
        dotted = self.apply_let_overrides(overrides)
        items = self.realize(tree)
        for key, text in dotted:
            items = self.apply_field_override(items, key, text)
        items = self.resolve_aliases(items)
        for b in list(self.globals.vars.values()):
            self.lookup(s.Var(b.name, b.span or Span(file.path)), self.globals)
        return s.Spec(file.path, tuple(items))

    def load_tree(self, file: s.File, stack: list[str], via: list[s.Import]) -> _Node:
        node = _Node(file, [])
        for item in file.items:
            if not isinstance(item, s.Import):
                continue
            path = os.path.abspath(os.path.join(os.path.dirname(file.path), item.path))
            if path in stack:
                start = stack.index(path)
                chain = " -> ".join(self.show(p) for p in stack[start:] + [path])
                # reported where the cycle starts: in the file that is imported again
                steps = via[start:] + [item]
                notes = [(f"'{self.show(imp.span.path)}' imports '{imp.path}'", imp.span)
                         for imp in steps[1:]]
                raise SpecError(f"import cycle: {chain}", steps[0].span,
                                "a file cannot import itself, directly or through others",
                                notes)
            try:
                child = self.load(path, item.span)
            except NetdslError as e:
                if e.span.line > 0 and e.span.path == path:
                    raise  # an error inside the imported file: keep its location
                if e.span == item.span:
                    raise
                raise SpecError(f"cannot import \"{item.path}\": {e.message}", item.span,
                                "import paths are relative to the importing file's folder"
                                ) from None
            node.imports.append((item, self.load_tree(child, stack + [path], via + [item])))
        return node

    def collect(self, node: _Node, lets: dict[str, s.Let]) -> None:
        """Lets and groups of the whole tree, imported first, the importer overriding."""
        for _, child in node.imports:
            self.collect(child, lets)
        own_lets: dict[str, s.Let] = {}
        own_groups: dict[str, s.GroupDef] = {}
        for item in node.file.items:
            if isinstance(item, s.Let):
                if item.name in own_lets:
                    raise SpecError(f"variable '{item.name}' is defined twice", item.span,
                                    notes=[("first defined here", own_lets[item.name].span)])
                own_lets[item.name] = item
            elif isinstance(item, s.GroupDef):
                if item.name in own_groups:
                    raise SpecError(f"group '{item.name}' is defined twice", item.span,
                                    notes=[("first defined here", own_groups[item.name].span)])
                self.check_group(item)
                own_groups[item.name] = item
        lets.update(own_lets)
        self.groups.update(own_groups)

    @staticmethod
    def check_group(g: s.GroupDef) -> None:
        seen: set[str] = set()
        for p in g.params:
            if p.name in RESERVED:
                raise SpecError(f"'{p.name}' cannot be a group parameter: ${p.name} is "
                                "already the instance's", p.span,
                                "pick another name")
            if p.name in seen:
                raise SpecError(f"parameter '{p.name}' is listed twice", p.span)
            seen.add(p.name)

    # ------------------------------------------------------------------ overrides

    def apply_let_overrides(self, overrides: Mapping[str, str]) -> list[tuple[str, str]]:
        dotted: list[tuple[str, str]] = []
        for key, text in overrides.items():
            if "." in key:
                dotted.append((key, text))
                continue
            path = f"<--set {key}>"
            remember_source(path, f"{key}={text}")
            span = Span(path, 1, 1, 1, len(key) + 1)
            if key not in self.globals.vars:
                names = sorted(self.globals.vars)
                listing = ", ".join(names) if names else "none"
                raise SpecError(f"--set {key}: there is no variable '{key}' "
                                f"(variables: {listing})", span,
                                did_you_mean(key, names) or "--set name=value replaces a let; "
                                "use block.field=value to set a field")
            value = self.override_value(key, text, path, as_literal=False)
            self.globals.vars[key] = _Binding(key, expr=value, scope=self.globals,
                                              span=value.span)
        return dotted

    @staticmethod
    def override_value(key: str, text: str, path: str, as_literal: bool) -> s.Value:
        col0 = len(key) + 2
        span = Span(path, 1, col0, 1, col0 + len(text))
        try:
            v = _parse_expr(text, span, col0, False)
        except NetdslError:
            return s.Scalar(text, "string", span)
        if (as_literal and not _is_literal_value(v)) or _words_in_arithmetic(v):
            return s.Scalar(text, "string", span)  # e.g. a path: data/train.txt
        return v

    def apply_field_override(self, items: list[s.Field], key: str, text: str) -> list[s.Field]:
        path = f"<--set {key}>"
        remember_source(path, f"{key}={text}")
        value = self.override_value(key, text, path, as_literal=True)
        value = self.eval(value, self.globals)
        parts = key.split(".")
        if any(not p for p in parts):
            raise SpecError(f"--set {key}: empty name in dotted key", Span(path, 1, 1))
        head = parts[0]
        targets = [i for i, f in enumerate(items) if f.key == head and isinstance(f.value, s.Block)]
        if not targets:
            targets = [i for i, f in enumerate(items) if _is_layer(f) and _name(f.value) == head]  # type: ignore[arg-type]
        out = list(items)
        if not targets:
            out.append(s.Field(head, s.Block((), value.span), value.span, value.span))
            targets = [len(out) - 1]
        for i in targets:
            f = out[i]
            assert isinstance(f.value, s.Block)
            out[i] = dataclasses.replace(f, value=self.set_path(f.value, parts[1:], value))
        return out

    def set_path(self, block: s.Block, parts: list[str], value: s.Value) -> s.Block:
        key = parts[0]
        if len(parts) == 1:
            return _set_fields(block, [s.Field(key, value, value.span, value.span)])
        inner = [f for f in block.fields(key) if isinstance(f.value, s.Block)]
        if not inner:
            new = self.set_path(s.Block((), value.span), parts[1:], value)
            return _set_fields(block, [s.Field(key, new, value.span, value.span)])
        items: list[s.Item] = []
        for f in block.items:
            if isinstance(f, s.Field) and f.key == key and isinstance(f.value, s.Block):
                f = dataclasses.replace(f, value=self.set_path(f.value, parts[1:], value))
            items.append(f)
        return s.Block(tuple(items), block.span)

    # ------------------------------------------------------------------ per file

    def realize(self, node: _Node) -> list[s.Field]:
        """One file: its imports merged in order, then its own items, then its edits."""
        base: list[s.Field] = []
        for imp, child in node.imports:
            note = (f"imported by {self.show(node.file.path)}", imp.span)
            base = _merge(base, [_with_note(f, note) for f in self.realize(child)])
        chain = _Chain(_last_top(base))
        own: list[s.Field] = []
        self.expand(node.file.items, self.globals, _Ctx(None, (), chain, "file"), own, True)
        result = _merge(base, own, self.units, self.aliases)
        edits = [i for i in node.file.items if isinstance(i, EDITS)]
        if edits:
            for e in edits:
                result = self.edit(e, result)
        return result

    # ------------------------------------------------------------------ evaluation

    def lookup(self, var: s.Var, scope: _Scope) -> s.Value:
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
            try:
                assert b.expr is not None and b.scope is not None
                b.value = self.eval(b.expr, b.scope)
            finally:
                b.busy = False
                self.evaluating.pop()
        return _respan(b.value, var.span)

    def eval(self, v: s.Value, scope: _Scope) -> s.Value:
        """An expression -> a literal (Scalar, ListValue or Block of literals)."""
        if isinstance(v, s.Scalar):
            if v.kind == "string" and "${" in str(v.value):
                return s.Scalar(self.interpolate(v, scope), "string", v.span)
            return v
        if isinstance(v, s.Var):
            return self.lookup(v, scope)
        if isinstance(v, s.ListValue):
            return s.ListValue(tuple(self.eval(i, scope) for i in v.items), v.span)
        if isinstance(v, s.Block):
            return self.eval_block(v, scope)
        if isinstance(v, s.Neg):
            x = self.eval(v.operand, scope)
            if not _num(x):
                raise SpecError(f"cannot negate {_kind(x)}", v.span)
            return _scalar(-x.value, v.span)  # type: ignore[union-attr, operator]
        if isinstance(v, s.BinOp):
            return self.binop(v, scope)
        if isinstance(v, s.Call):
            return self.call(v, scope)
        raise AssertionError(f"not a value: {v!r}")

    def binop(self, v: s.BinOp, scope: _Scope) -> s.Value:
        a, b = self.eval(v.left, scope), self.eval(v.right, scope)
        if v.op == "+":
            if isinstance(a, s.Scalar) and isinstance(b, s.Scalar) \
                    and a.kind == b.kind == "string":
                return s.Scalar(str(a.value) + str(b.value), "string", v.span)
            if isinstance(a, s.ListValue) and isinstance(b, s.ListValue):
                return s.ListValue(a.items + b.items, v.span)
        verb, fn = _OPS[v.op]
        if _num(a) and _num(b):
            try:
                return _scalar(fn(a.value, b.value), v.span)  # type: ignore[union-attr, arg-type]
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
        raise SpecError(f"cannot {verb} {_kind(a)} and {_kind(b)} with '{v.op}'", v.span, hint)

    def call(self, v: s.Call, scope: _Scope) -> s.Value:
        fn = FUNCTIONS.get(v.func)
        if fn is None:
            hint = did_you_mean(v.func, FUNCTIONS)
            if v.func in self.groups:
                hint = f"'{v.func}' is a group: use it as a layer type, type: {v.func}(...)"
            raise SpecError(f"unknown function '{v.func}'", _head(v.span, v.func),
                            hint or "functions: " + ", ".join(FUNCTIONS))
        return fn([self.eval(a, scope) for a in v.args], v.span)

    def interpolate(self, v: s.Scalar, scope: _Scope) -> str:
        text = str(v.value)
        out: list[str] = []
        i = 0
        while True:
            j = text.find("${", i)
            if j < 0:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:j])
            k = text.find("}", j + 2)
            if k < 0:
                raise SpecError("unterminated '${' in string", _sub(v.span, j, 2),
                                "close the expression with '}'")
            expr = _interp_expr(text[j + 2:k], v.span, j)
            out.append(_text(self.eval(expr, scope), expr.span))
            i = k + 1

    def local_scope(self, items: Sequence[s.Item], parent: _Scope) -> _Scope:
        lets = [i for i in items if isinstance(i, s.Let)]
        if not lets:
            return parent
        sc = _Scope(parent)
        for let in lets:
            if let.name in sc.vars:
                raise SpecError(f"variable '{let.name}' is defined twice", let.span,
                                notes=[("first defined here", sc.vars[let.name].span)])
            sc.vars[let.name] = _Binding(let.name, expr=let.value, scope=sc, span=let.span)
        return sc

    def iterations(self, rep: s.Repeat, scope: _Scope) -> Iterator[tuple[_Scope, s.Note]]:
        n = self.eval(rep.count, scope)
        if not (isinstance(n, s.Scalar) and n.kind == "int") or n.value < 1:  # type: ignore[operator]
            got = n.value if isinstance(n, s.Scalar) and _num(n) else _kind(n)
            raise SpecError(f"repeat count must be a positive integer, got {got}", rep.count.span,
                            "use int(...) to round a float" if _num(n) and n.kind == "float"
                            else None)
        count = int(n.value)  # type: ignore[arg-type]
        if count > MAX_REPEAT:
            raise SpecError(f"runaway expansion: repeat count {count} is over the limit of "
                            f"{MAX_REPEAT}", rep.count.span)
        for i in range(count):
            self.n_iterations += 1
            if self.n_iterations > MAX_ITERATIONS:
                raise SpecError(f"runaway expansion: more than {MAX_ITERATIONS} repeat "
                                "iterations", rep.count.span)
            sc = _Scope(scope)
            if rep.var is not None:
                sc.vars[rep.var] = _Binding(rep.var, value=s.Scalar(i, "int", rep.span))
                note = f"expanded from repeat with {rep.var} = {i}"
            else:
                note = f"expanded from iteration {i} of repeat"
            yield self.local_scope(rep.body.items, sc), (note, rep.span)

    def eval_block(self, block: s.Block, scope: _Scope,
                   hook: Callable[[s.Field, s.Value], s.Value] | None = None) -> s.Block:
        out: list[s.Item] = []
        self.eval_fields(block.items, self.local_scope(block.items, scope), hook, out)
        return s.Block(tuple(out), block.span)

    def eval_fields(self, items: Sequence[s.Item], scope: _Scope,
                    hook: Callable[[s.Field, s.Value], s.Value] | None,
                    out: list[s.Item]) -> None:
        for it in items:
            if isinstance(it, s.Field):
                val = self.eval(it.value, scope)
                if hook is not None:
                    val = hook(it, val)
                out.append(s.Field(it.key, val, it.span, it.key_span, it.notes))
            elif isinstance(it, s.Repeat):
                for sc, note in self.iterations(it, scope):
                    try:
                        self.eval_fields(it.body.items, sc, hook, out)
                    except NetdslError as e:
                        raise _note(e, note) from None
            elif not isinstance(it, s.Let):
                raise _misplaced(it, "inside a block")

    # ------------------------------------------------------------------ expansion

    def expand(self, items: Sequence[s.Item], scope: _Scope, ctx: _Ctx,
               out: list[s.Field], file_level: bool = False) -> None:
        """Expand a body's items (file, group, repeat or insert body) into `out`."""
        if not file_level:
            scope = self.local_scope(items, scope)
        for it in items:
            if isinstance(it, s.Field):
                if it.key == "layer":
                    self.layer(it, scope, ctx, out)
                elif ctx.where != "file":
                    what = "a group body" if ctx.where == "group" else "an insert body"
                    raise SpecError(f"{what} holds only layers; '{it.key}' is not a layer",
                                    it.key_span, "write layer { ... } here")
                else:
                    f = s.Field(it.key, self.eval(it.value, scope), it.span, it.key_span,
                                it.notes + ctx.notes)
                    out.append(f)
                    if f.key == "input" and isinstance(f.value, s.Block) and _name(f.value):
                        ctx.chain.cur = _name(f.value)
            elif isinstance(it, s.Repeat):
                for sc, note in self.iterations(it, scope):
                    sub = _Ctx(ctx.inst, (note,) + ctx.notes, ctx.chain, ctx.where)
                    try:
                        self.expand(it.body.items, sc, sub, out)
                    except NetdslError as e:
                        raise _note(e, note) from None
            elif isinstance(it, s.Let):
                continue
            elif not file_level:
                where = {"group": "in a group body", "insert": "in an insert body"}.get(
                    ctx.where, "inside a repeat")
                raise _misplaced(it, where)

    def layer(self, f: s.Field, scope: _Scope, ctx: _Ctx, out: list[s.Field]) -> None:
        if not isinstance(f.value, s.Block):
            raise SpecError("'layer' must be a block { ... }", f.value.span)
        body = f.value
        tf = body.first("type")
        group, pos = self.group_for(tf, scope) if tf is not None else (None, ())
        if group is not None:
            self.instance_from_syntax(f, body, group, pos, scope, ctx, out)
            return
        hook = self.wiring_hook(ctx.inst) if ctx.inst else None
        ev = self.eval_block(body, scope, hook)
        if ctx.chain.fill:
            ev = _fill_defaults(ev, ctx.chain.cur)
        self.emit(s.Field("layer", ev, f.span, f.key_span, f.notes + ctx.notes), ctx, out)

    def emit(self, f: s.Field, ctx: _Ctx, out: list[s.Field]) -> None:
        self.layers += 1
        if self.layers > MAX_LAYERS:
            raise SpecError(f"runaway expansion: more than {MAX_LAYERS} layers", f.span,
                            "check repeat counts and groups that instantiate each other")
        assert isinstance(f.value, s.Block)
        tops = _tops(f.value)
        if tops:
            ctx.chain.cur = tops[0]
        out.append(f)

    def group_for(self, tf: s.Field,
                  scope: _Scope) -> tuple[s.GroupDef | None, tuple[s.Value, ...]]:
        v = tf.value
        if isinstance(v, s.Call):
            g = self.groups.get(v.func)
            if g is None:
                hint = did_you_mean(v.func, self.groups)
                known = ", ".join(self.groups) or "none"
                raise SpecError(f"unknown group '{v.func}'", _head(v.span, v.func),
                                hint or f"defined groups: {known}")
            return g, v.args
        if isinstance(v, s.Scalar) and v.kind in ("word", "string") and "${" not in str(v.value):
            return self.groups.get(str(v.value)), ()
        ev = self.eval(v, scope)
        if isinstance(ev, s.Scalar) and ev.kind in ("word", "string"):
            return self.groups.get(str(ev.value)), ()
        return None, ()

    def wiring_hook(self, inst: _Inst) -> Callable[[s.Field, s.Value], s.Value]:
        """Prefix a group body's literal names, tops and local bottoms with the instance."""
        def hook(f: s.Field, val: s.Value) -> s.Value:
            if f.key not in ("name", "top", "bottom"):
                return val
            raws = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
            vals = val.items if isinstance(val, s.ListValue) else (val,)
            if len(raws) != len(vals):
                return val
            new: list[s.Value] = []
            for r, v in zip(raws, vals, strict=True):
                if _is_literal_name(r) and isinstance(v, s.Scalar) \
                        and (f.key != "bottom" or str(v.value) in inst.locals):
                    v = s.Scalar(f"{inst.name}/{v.value}", "string", v.span)
                new.append(v)
            return s.ListValue(tuple(new), val.span) if isinstance(val, s.ListValue) else new[0]
        return hook

    def locals_of(self, g: s.GroupDef) -> frozenset[str]:
        """Names and tops a group body writes as plain literals (its local names)."""
        hit = self._locals_cache.get(id(g))
        if hit is not None:
            return hit
        found: set[str] = set()

        def scan(items: Sequence[s.Item]) -> None:
            for it in items:
                if isinstance(it, s.Repeat):
                    scan(it.body.items)
                elif isinstance(it, s.Field) and _is_layer(it):
                    for f in it.value.items:  # type: ignore[union-attr]
                        if isinstance(f, s.Field) and f.key in ("name", "top"):
                            vals = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
                            found.update(str(v.value) for v in vals  # type: ignore[union-attr]
                                         if _is_literal_name(v))
        scan(g.body.items)
        res = frozenset(found)
        self._locals_cache[id(g)] = res
        return res

    def instance_from_syntax(self, f: s.Field, body: s.Block, group: s.GroupDef,
                             pos: tuple[s.Value, ...], scope: _Scope, ctx: _Ctx,
                             out: list[s.Field]) -> None:
        hook = self.wiring_hook(ctx.inst) if ctx.inst else None
        fields: list[s.Field] = []
        for it in body.items:
            if not isinstance(it, s.Field):
                raise _misplaced(it, f"in an instance of group '{group.name}' (it takes "
                                     "only fields)")
            if it.key == "type":
                continue
            val = self.eval(it.value, scope)
            if hook is not None:
                val = hook(it, val)
            fields.append(s.Field(it.key, val, it.span, it.key_span))
        args = [self.eval(a, scope) for a in pos]
        self.instantiate(f, group, fields, args, ctx, out)

    def instantiate(self, f: s.Field, group: s.GroupDef, fields: list[s.Field],
                    pos: list[s.Value], ctx: _Ctx, out: list[s.Field],
                    rename_to: str | None = None) -> None:
        """Expand one group instance whose own fields are already evaluated."""
        g = group.name
        name_f = next((x for x in fields if x.key == "name"), None)
        if name_f is None:
            raise SpecError(f"an instance of group '{g}' needs a name", f.span,
                            'add name: "..." (its layers are called name/...)')
        if not (isinstance(name_f.value, s.Scalar) and name_f.value.kind in ("string", "word")):
            raise SpecError("the instance's name must be a string", name_f.value.span)
        name = str(name_f.value.value)
        bottoms = [b for x in fields if x.key == "bottom" for b in _strs(x.value)]
        tops = [t for x in fields if x.key == "top" for t in _strs(x.value)]
        params = {p.name: p for p in group.params}
        args: dict[str, s.Value] = {}
        if len(pos) > len(params):
            raise SpecError(f"group '{g}' takes {len(params)} argument(s), got {len(pos)}",
                            f.span, f"its parameters are: {_plist(group)}")
        for v, p in zip(pos, group.params, strict=False):
            args[p.name] = v
        common: list[s.Field] = []
        for x in fields:
            if x.key in ("name", "bottom", "top"):
                continue
            if x.key in params:
                if x.key in args:
                    raise SpecError(f"argument '{x.key}' of group '{g}' is given twice",
                                    x.key_span)
                args[x.key] = x.value
            elif x.key in COMMON:
                common.append(x)
            else:
                hint = did_you_mean(x.key, list(params) + list(COMMON))
                raise SpecError(f"group '{g}' has no parameter '{x.key}'", x.key_span,
                                hint or f"its parameters are: {_plist(group)}")
        missing = [p.name for p in group.params if p.name not in args and p.default is None]
        if missing:
            listed = ", ".join(f"'{m}'" for m in missing)
            raise SpecError(f"instance '{name}' of group '{g}' is missing argument(s) {listed}",
                            f.span, f"add {missing[0]}: ... to the instance")
        if len(self.instances) >= MAX_DEPTH:
            chain = " -> ".join(self.instances[-4:] + [g])
            raise SpecError(f"runaway expansion: groups nested more than {MAX_DEPTH} deep "
                            f"(... -> {chain})", f.span,
                            "a group probably instantiates itself")

        sc = _Scope(self.globals)
        for p in group.params:
            if p.name in args:
                sc.vars[p.name] = _Binding(p.name, value=args[p.name])
            else:
                sc.vars[p.name] = _Binding(p.name, expr=p.default, scope=sc, span=p.span)
        nspan = name_f.value.span
        sc.vars["name"] = _Binding("name", value=s.Scalar(name, "string", nspan))
        first = bottoms[0] if bottoms else ctx.chain.cur
        if first is not None:
            sc.vars["bottom"] = _Binding("bottom", value=s.Scalar(first, "string", f.span))
        else:
            def no_bottom(at: Span) -> NetdslError:
                return SpecError(f"instance '{name}' of group '{g}' has no bottom", at,
                                 f'give the instance a bottom: layer {{ name: "{name}" '
                                 f'type: {g} bottom: "..." }}')
            sc.vars["bottom"] = _Binding("bottom", fail=no_bottom)
        sc.vars["bottoms"] = _Binding("bottoms", value=s.ListValue(
            tuple(s.Scalar(b, "string", f.span) for b in bottoms), f.span))
        top_list = tops or [name]
        sc.vars["top"] = _Binding("top", value=s.Scalar(top_list[0], "string", f.span))
        sc.vars["tops"] = _Binding("tops", value=s.ListValue(
            tuple(s.Scalar(t, "string", f.span) for t in top_list), f.span))

        note = (f"expanded from instance '{name}' of group '{g}'", f.span)
        inner = _Ctx(_Inst(name, g, self.locals_of(group)), (note,) + ctx.notes,
                     _Chain(first), "group")
        produced: list[s.Field] = []
        self.instances.append(g)
        try:
            self.expand(group.body.items, sc, inner, produced)
        except NetdslError as e:
            raise _note(e, note) from None
        finally:
            self.instances.pop()
        if not produced:
            raise SpecError(f"group '{g}' makes no layers", f.span)
        last = produced[-1].value
        assert isinstance(last, s.Block)
        output = _tops(last)[0] if _tops(last) else name
        target = rename_to if rename_to is not None else (
            tops[0] if tops and tops[0] != name else None)
        if target is not None and target != output:
            if not any(output in _tops(x.value) for x in produced):  # type: ignore[arg-type]
                top_f = next((x for x in fields if x.key == "top"), name_f)
                raise SpecError(f"cannot name the output of instance '{name}' '{target}': its "
                                f"last layer writes '{output}', which the group does not make",
                                top_f.span)
            produced = [_rename_blob(x, output, target) for x in produced]
            output = target
        if common:
            produced = [_copy_common(x, common) for x in produced]
        self.aliases[name] = output
        if ctx.where == "file" and ctx.inst is None:
            for x in produced:
                self.units[id(x)] = (x, name)
        out.extend(produced)
        ctx.chain.cur = output

    # ------------------------------------------------------------------ aliases

    def effective(self, items: list[s.Field]) -> Callable[[str], str]:
        """The blob a bottom really reads: `inst` means the instance's output.

        Aliases are resolved only at the very end (an importer may still replace the
        instance), so edits look through them with this.
        """
        if not self.aliases:
            return lambda b: b
        made: set[str] = set()
        for f in items:
            if _is_layer(f):
                made.update(_tops(f.value))  # type: ignore[arg-type]
            elif f.key == "input" and isinstance(f.value, s.Block) and _name(f.value):
                made.add(_name(f.value))  # type: ignore[arg-type]
        aliases = self.aliases
        return lambda b: aliases[b] if b in aliases and b not in made else b

    def resolve_aliases(self, items: list[s.Field]) -> list[s.Field]:
        """Rewrite `bottom: "inst"` to the instance's output wherever no layer makes "inst"."""
        eff = self.effective(items)
        out = []
        for f in items:
            if _is_layer(f):
                assert isinstance(f.value, s.Block)
                nb = _map_blobs(f.value, "bottom", eff)
                if nb is not f.value:
                    f = dataclasses.replace(f, value=nb)
            out.append(f)
        return out

    # ------------------------------------------------------------------ edits

    def edit(self, e: s.Item, items: list[s.Field]) -> list[s.Field]:
        assert isinstance(e, EDITS)
        target = e.target
        tspan = _target_span(e.span, target)
        if "${" in target:
            target = self.interpolate(s.Scalar(target, "string", tspan), self.globals)
        verb = "insert " + e.where if isinstance(e, s.Insert) else type(e).__name__.lower()
        idxs = [i for i, f in enumerate(items) if _is_layer(f) and _name(f.value) == target]  # type: ignore[arg-type]
        if not idxs:
            names = [n for f in items if _is_layer(f) and (n := _name(f.value))]  # type: ignore[arg-type]
            hint = did_you_mean(target, names)
            if hint is None and target in self.aliases:
                inner = next((n for n in names if n.startswith(target + "/")), None)
                hint = f"'{target}' is a group instance; edit one of its layers" + (
                    f", e.g. '{inner}'" if inner else "")
            raise SpecError(f"{verb}: no layer named '{target}'", tspan, hint)
        if isinstance(e, s.Replace):
            return self.replace(e, items, idxs)
        if isinstance(e, s.Update):
            body = self.eval_block(e.body, self.globals)
            out = list(items)
            for i in idxs:
                f = out[i]
                assert isinstance(f.value, s.Block)
                out[i] = dataclasses.replace(f, value=_set_fields(f.value, _fields(body)))
            return out
        if isinstance(e, s.Remove):
            out = list(items)
            for _ in idxs:
                i = next(i for i, f in enumerate(out) if _is_layer(f) and _name(f.value) == target)  # type: ignore[arg-type]
                out = self.remove_at(out, i, tspan)
            return out
        assert isinstance(e, s.Insert)
        return self.insert(e, items, idxs[-1] if e.where == "after" else idxs[0])

    def replace(self, e: s.Replace, items: list[s.Field], idxs: list[int]) -> list[s.Field]:
        raw_type = e.body.first("type")
        group, pos = self.group_for(raw_type, self.globals) if raw_type else (None, ())
        if group is not None:
            raw = s.Block(tuple(i for i in e.body.items
                                if not (isinstance(i, s.Field) and i.key == "type")), e.body.span)
            body = self.eval_block(raw, self.globals)
        else:
            body = self.eval_block(e.body, self.globals)
        args = [self.eval(a, self.globals) for a in pos]
        out: list[s.Field] = []
        for i, f in enumerate(items):
            if i not in idxs:
                out.append(f)
                continue
            x = f.value
            assert isinstance(x, s.Block)
            note = (f"replacing layer '{_name(x)}'", f.span)
            if raw_type is None:
                out.append(dataclasses.replace(f, value=_set_fields(x, _fields(body))))
                continue
            new = _rewire_fields(x, body, keep_type=group is None)
            if group is None:
                out.append(s.Field("layer", new, e.span, e.span, (note,)))
                continue
            inst = s.Field("layer", new, e.span, e.span)
            chain = _Chain(_last_top(out))
            tops = _tops(x)
            self.instantiate(inst, group, _fields(new), args,
                             _Ctx(None, (note,), chain, "file"), out,
                             rename_to=tops[0] if tops else None)
        return out

    def remove_at(self, items: list[s.Field], i: int, tspan: Span) -> list[s.Field]:
        x = items[i].value
        assert isinstance(x, s.Block)
        xname = _name(x)
        eff = self.effective(items)
        bottoms = [eff(b) for b in _values(x, "bottom")]
        implicit = not bottoms
        if implicit:
            prev = _last_top(items[:i])
            bottoms = [prev] if prev else []
        tops = _tops(x)
        out = items[:i] + items[i + 1:]
        if tops and all(t in bottoms for t in tops):
            return out  # in place: the blob keeps its name
        pairs = dict(zip(tops, bottoms, strict=False)) if len(tops) == len(bottoms) else {}
        live = set(tops)
        for j in range(i, len(out)):
            f = out[j]
            if not live:
                break
            if not _is_layer(f):
                continue
            lb = f.value
            assert isinstance(lb, s.Block)
            reads = [eff(b) for b in _values(lb, "bottom") if eff(b) in live]
            for b in reads:
                if b not in pairs:
                    raise SpecError(
                        f"cannot remove '{xname}': layer '{_name(lb)}' reads its top '{b}', and "
                        f"'{xname}' has {len(bottoms)} bottom(s) for {len(tops)} top(s), "
                        "which cannot be paired", tspan,
                        f"remove or update '{_name(lb)}' first",
                        [(f"'{_name(lb)}' is here", f.span)])
            if reads:
                moved = set(reads)
                lb = _map_blobs(lb, "bottom",
                                lambda b, m=moved: pairs[eff(b)] if eff(b) in m else b)
                out[j] = dataclasses.replace(f, value=lb)
            live -= set(_values(lb, "top") or [])  # a writer of the blob takes it over
        if implicit or not tops or i >= len(out) or not _is_layer(out[i]):
            return out
        nxt = out[i].value
        assert isinstance(nxt, s.Block)
        if not _values(nxt, "bottom") and tops[0] in pairs:
            want = pairs[tops[0]]
            if want != _last_top(out[:i]):
                out[i] = dataclasses.replace(out[i], value=_add_field(
                    nxt, "bottom", s.Scalar(want, "string", nxt.span)))
        return out

    def insert(self, e: s.Insert, items: list[s.Field], i: int) -> list[s.Field]:
        x = items[i].value
        assert isinstance(x, s.Block)
        eff = self.effective(items)
        if e.where == "after":
            old = _tops(x)[0] if _tops(x) else None
            at = i + 1
        else:
            bottoms = [eff(b) for b in _values(x, "bottom")]
            old = bottoms[0] if bottoms else _last_top(items[:i])
            at = i
        chain = _Chain(old, fill=True)
        new: list[s.Field] = []
        self.expand(e.body.items, self.globals, _Ctx(None, (), chain, "insert"), new)
        out = items[:at] + new + items[at:]
        cur = chain.cur
        if old is None or cur is None or cur == old:
            return out
        for j in range(at + len(new), len(out)):
            f = out[j]
            if not _is_layer(f):
                continue
            lb = f.value
            assert isinstance(lb, s.Block)
            reads = old in [eff(b) for b in _values(lb, "bottom")]
            writes = old in _values(lb, "top")
            if reads:
                lb = _map_blobs(lb, "bottom", lambda b: cur if eff(b) == old else b)
                if writes:
                    lb = _map_blobs(lb, "top", lambda b: cur if b == old else b)
                out[j] = dataclasses.replace(f, value=lb)
            elif writes:
                break  # the blob is made anew: later readers read that
        return out


# --------------------------------------------------------------------------- module helpers


def _head(span: Span, name: str) -> Span:
    return Span(span.path, span.line, span.col, span.line, span.col + len(name))


def _plist(g: s.GroupDef) -> str:
    return ", ".join(p.name for p in g.params) or "(none)"


def _fields(block: s.Block) -> list[s.Field]:
    return [f for f in block.items if isinstance(f, s.Field)]


def _misplaced(it: s.Item, where: str) -> SpecError:
    what = {s.Import: "import", s.GroupDef: "a group definition", s.Replace: "replace",
            s.Update: "update", s.Remove: "remove", s.Insert: "insert", s.Let: "let",
            s.Repeat: "repeat"}.get(type(it), type(it).__name__)
    hint = "move it to the top level of the file" if isinstance(
        it, s.Import | s.GroupDef | s.Replace | s.Update | s.Remove | s.Insert) else None
    return SpecError(f"{what} is not allowed {where}", it.span, hint)


def _last_top(items: Sequence[s.Field]) -> str | None:
    for f in reversed(items):
        if _is_layer(f):
            tops = _tops(f.value)  # type: ignore[arg-type]
            if tops:
                return tops[0]
        elif f.key == "input" and isinstance(f.value, s.Block) and _name(f.value):
            return _name(f.value)
    return None


def _fill_defaults(block: s.Block, cur: str | None) -> s.Block:
    """Insert bodies: a missing bottom reads the chain, a missing top is the layer's name."""
    if not block.fields("bottom") and cur is not None:
        block = _add_field(block, "bottom", s.Scalar(cur, "string", block.span))
    name = _name(block)
    if not block.fields("top") and name is not None:
        block = _add_field(block, "top", s.Scalar(name, "string", block.span))
    return block


def _rename_blob(f: s.Field, old: str, new: str) -> s.Field:
    b = f.value
    assert isinstance(b, s.Block)
    fn = (lambda x: new if x == old else x)  # noqa: E731
    nb = _map_blobs(_map_blobs(b, "bottom", fn), "top", fn)
    if not b.fields("top") and _name(b) == old:
        nb = _add_field(nb, "top", s.Scalar(new, "string", b.span))
    return f if nb is b else dataclasses.replace(f, value=nb)


def _copy_common(f: s.Field, common: list[s.Field]) -> s.Field:
    b = f.value
    assert isinstance(b, s.Block)
    add: list[s.Field] = []
    if b.first("devices") is None:
        add += [c for c in common if c.key == "devices"]
    if not any(b.first(k) is not None for k in PHASE_KEYS):
        add += [c for c in common if c.key in PHASE_KEYS]
    if not add:
        return f
    return dataclasses.replace(f, value=s.Block(b.items + tuple(add), b.span))


def _rewire_fields(x: s.Block, body: s.Block, keep_type: bool) -> s.Block:
    """`replace`: the old layer's wiring (unless the body sets it) plus the body's fields."""
    set_keys = {f.key for f in _fields(body)}
    items: list[s.Item] = []
    placed: set[str] = set()
    for f in _fields(x):
        if f.key in WIRING and f.key not in set_keys:
            items.append(f)
        elif f.key in set_keys and (f.key in WIRING or f.key == "type") and f.key not in placed:
            placed.add(f.key)
            items.extend(b for b in _fields(body) if b.key == f.key)
    items.extend(b for b in _fields(body) if b.key not in placed)
    if not keep_type:
        items = [i for i in items if not (isinstance(i, s.Field) and i.key == "type")]
    return s.Block(tuple(items), body.span)


def _matches(f: s.Field, key: str | None, slots: list[list[s.Field]], from_base: list[bool],
             prefix: bool) -> list[int]:
    """Imported slots that `f` overrides: same key and name (or the instance's layers)."""
    over = f.value
    assert isinstance(over, s.Block)
    if f.key == "layer" and key is None:
        return []
    matches = []
    for i, slot in enumerate(slots):
        if not from_base[i] or len(slot) != 1:
            continue
        g = slot[0]
        if g.key != f.key or not isinstance(g.value, s.Block):
            continue
        name = _name(g.value)
        if name == key or (prefix and name is not None and name.startswith(f"{key}/")):
            matches.append(i)
    phase = _phase(over)
    if phase is None or not matches:
        return matches
    same = [i for i in matches if _phase(slots[i][0].value) == phase]  # type: ignore[arg-type]
    return same or [i for i in matches if _phase(slots[i][0].value) is None]  # type: ignore[arg-type]


def _merge(base: list[s.Field], over: list[s.Field],
           units: Mapping[int, tuple[s.Field, str]] | None = None,
           instances: Container[str] = ()) -> list[s.Field]:
    """The importer's fields `over` the imported `base` (see the module docstring).

    `units` tags the importer's layers made by a top-level group instance with that
    instance's name, so that re-instantiating an imported instance (or giving a plain
    layer its name) replaces all of its layers (``inst/...``) at their position.
    """
    if not base:
        return list(over)
    slots: list[list[s.Field]] = [[f] for f in base]
    from_base = [True] * len(base)
    unit_slot: dict[str, int] = {}
    for f in over:
        unit = None
        if units is not None and f.key == "layer":
            hit = units.get(id(f))
            unit = hit[1] if hit is not None and hit[0] is f else None
        if unit is not None and unit in unit_slot:
            slots[unit_slot[unit]].append(f)
            continue
        if isinstance(f.value, s.Block):
            key = unit if unit is not None else _name(f.value)
            prefix = unit is not None or key in instances
            matches = _matches(f, key, slots, from_base, prefix)
            if matches and f.key == "layer":
                slots[matches[0]] = [f]
                from_base[matches[0]] = False
                for m in matches[1:]:
                    slots[m] = []
                if unit is not None:
                    unit_slot[unit] = matches[0]
                continue
            if matches:
                for m in matches:
                    g = slots[m][0]
                    assert isinstance(g.value, s.Block)
                    merged = s.Block(tuple(_merge(_fields(g.value), _fields(f.value))),
                                     g.value.span)
                    slots[m] = [dataclasses.replace(g, value=merged)]
                continue
        else:
            matches = [i for i, slot in enumerate(slots) if from_base[i] and len(slot) == 1
                       and slot[0].key == f.key and not isinstance(slot[0].value, s.Block)]
            if matches:
                slots[matches[0]] = [f]
                from_base[matches[0]] = False
                for m in matches[1:]:
                    slots[m] = []
                continue
        slots.append([f])
        from_base.append(False)
    return [f for slot in slots for f in slot]
