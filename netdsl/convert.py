"""Caffe prototxt <-> .net, both ways (``netdsl convert``).

``prototxt_to_net`` turns a Caffe file (V1 or V2) into readable .net text in netdsl's
idioms rather than a field-by-field dump: type parameters written in the layer, fillers
as calls, ``phase: TEST``, defaults left out, the bottoms and tops netdsl would imply
left out, one line per short layer. ``net_to_prototxt`` goes the other way: a resolved
.net as a Caffe V2 NetParameter that Caffe and Netscope read, everything explicit.

Neither direction knows a layer type by name (Input aside, whose batch Caffe keeps in
its shape): the fields come from each type's ``Params`` dataclass in the registry, the
``*_param`` block from the type's name or its ``caffe_params`` (``reads_param_block``
checks the choice), a field's ``metadata["block"]`` where Caffe reads it from another
block, and the reverse renames from ``caffe_compat``. The one exception table is
``_LOSS_FIELDS``, below.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import syntax as s
from .build import COMMON_FIELDS, in_phase, input_block_layer
from .caffe_compat import RENAME_BLOCKS
from .diagnostics import Span, SpecError
from .fields import convert as convert_fields
from .ir import Phase
from .layers import INPUT_TYPE, lookup
from .layers.base import Filler, FillerType, LayerType
from .printer import WIDTH, expr, print_spec, quote
from .resolve import FUNCTIONS

__all__ = ["canonical_filler", "convert", "net_to_prototxt", "param_block", "prototxt_to_net"]

PHASES = (Phase.TRAIN, Phase.TEST)

#: A field of a .net layer as text, or a block as (key, its fields as text).
Token = str | tuple[str, list[str]]

#: Caffe's LossParameter fields. Every loss layer reads them from ``loss_param``, not
#: from its own block, and that is a fact about Caffe's proto, not about one type.
_LOSS_FIELDS = frozenset({"ignore_label", "normalization", "normalize"})

#: netdsl field -> the layer-level Caffe block it came from (``transform`` ->
#: ``transform_param``), the reverse of caffe_compat's renames.
_LAYER_BLOCKS = {new: old for old, new in RENAME_BLOCKS.items()}

#: The Filler fields each kind reads (Caffe's fillers ignore the others; ``sparse`` is
#: kept everywhere because on a non-gaussian filler it is an error worth keeping).
_FILLER_READS: dict[FillerType, frozenset[str]] = {
    FillerType.constant: frozenset({"value"}),
    FillerType.gaussian: frozenset({"mean", "std"}),
    FillerType.uniform: frozenset({"min", "max"}),
    FillerType.xavier: frozenset({"variance_norm"}),
    FillerType.msra: frozenset({"variance_norm"}),
}

#: Layer fields that are neither wiring nor the type's own: kept as written.
_RULES = ("phase", "include", "exclude")
_NET_ONLY = ("devices",)
#: Top-level fields of a spec that a Caffe NetParameter has too.
_CAFFE_TOP = ("force_backward", "debug_info", "state")


# --------------------------------------------------------------------------- public API


def convert(path: str | Path, to: str | None = None, phase: str | None = None) -> str:
    """``netdsl convert``: a .prototxt becomes .net text, anything else prototxt text.

    ``to`` ("net" or "prototxt") overrides the choice made from the file's suffix;
    ``phase`` ("train"/"test") keeps only that phase's layers in a prototxt.
    """
    if to is None:
        to = "net" if str(path).endswith(".prototxt") else "prototxt"
    if to == "net":
        return prototxt_to_net(path)
    if to == "prototxt":
        return net_to_prototxt(path, phase)
    raise ValueError(f"convert: 'to' must be 'net' or 'prototxt', got {to!r}")


def param_block(kind: LayerType[Any]) -> str:
    """The ``*_param`` block Caffe reads this type's own fields from.

    The type's first ``caffe_params`` entry (other than loss_param) if it has one, else
    its name in snake case, as Caffe's proto spells it: InnerProduct -> inner_product,
    HDF5Data -> hdf5_data; an upper-case run stays one word (ReLU -> relu, PReLU ->
    prelu, TanH -> tanh, LRN -> lrn).
    """
    own = [b for b in kind.caffe_params if b != "loss_param"]
    if own:
        return own[0]
    block = re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", kind.name).lower() + "_param"
    assert kind.reads_param_block(block), (kind.name, block)
    return block


def canonical_filler(f: Filler) -> Filler:
    """The filler with the fields its kind ignores (xavier's ``std``...) at their defaults."""
    reads = _FILLER_READS.get(f.type, frozenset())
    reset: dict[str, Any] = {x.name: x.default for x in dataclasses.fields(Filler)
                             if x.name not in reads and x.name not in ("type", "sparse")}
    return dataclasses.replace(f, **reset)


def prototxt_to_net(path: str | Path) -> str:
    """A Caffe prototxt (V1 or V2) as readable .net text."""
    from . import load_spec

    spec = load_spec(path)
    layers = _layers(spec)
    out = [f"# Converted from {os.path.basename(str(path))} by netdsl convert."]
    name = next((f for f in spec.items if f.key == "name"), None)
    if name is not None:
        out.append(f"name: {expr(name.value)}")
    rest = [f for f in spec.items if f.key not in ("name", "layer", "input")]
    if rest:
        out.extend(print_spec(s.Spec(spec.path, tuple(rest))).rstrip("\n").split("\n"))
    out.append("")
    prev_multi = False
    for lay in layers:
        lines = _net_layer(lay)
        multi = len(lines) > 1
        if (multi or prev_multi or lay.kind.is_data) and out[-1] != "":
            out.append("")
        out.extend(lines)
        prev_multi = multi or lay.kind.is_data
    return "\n".join(out).rstrip("\n") + "\n"


def net_to_prototxt(path: str | Path, phase: Phase | str | None = None) -> str:
    """A .net (or prototxt) file, resolved, as a Caffe V2 NetParameter in text form.

    With ``phase`` only that phase's layers are written, without phase rules. The
    spec's ``data`` and ``solver`` sections and netdsl-only fields (``devices``) are
    left out: they are not part of a Caffe net.
    """
    from . import load_spec

    spec = load_spec(path)
    only = Phase.parse(phase) if isinstance(phase, str) else phase
    layers = _layers(spec)
    batch = _spec_batch(layers)
    items: list[s.Field] = []
    sp = Span(str(path))
    for f in spec.items:
        if f.key == "name" or f.key in _CAFFE_TOP:
            items.append(f)
    for lay in layers:
        if only is not None:
            if only not in lay.phases:
                continue
            items.append(_caffe_layer(lay, _bottoms(lay, only), batch, None, sp, rules=False))
            continue
        bottoms = {p: _bottoms(lay, p) for p in lay.phases}
        if len({tuple(b) for b in bottoms.values()}) > 1:
            # the implied bottom differs between phases: one copy per phase
            for p in lay.phases:
                items.append(_caffe_layer(lay, bottoms[p], batch, p, sp))
        else:
            items.append(_caffe_layer(lay, _bottoms(lay, lay.phases[0] if lay.phases else None),
                                      batch, None, sp))
    header = f"# Generated by netdsl from {os.path.basename(str(path))}.\n"
    return header + print_spec(s.Spec(spec.path, tuple(items)))


# --------------------------------------------------------------------------- the layers


@dataclass
class _Layer:
    body: s.Block
    kind: LayerType[Any]
    name: str
    params: Any
    keys: list[str]  # the Params fields written in the layer, in order
    bottoms: list[str]  # as written
    tops: list[str]  # as written, else the default (the layer's name)
    phases: tuple[Phase, ...]  # the phases the layer is in
    implied: dict[Phase, str | None]  # per phase: the bottom build gives when none is written

    def word(self, key: str) -> bool:
        """Whether the field was written as a bare word (Caffe's enums: backend: LMDB)."""
        f = self.body.first(key)
        return f is not None and isinstance(f.value, s.Scalar) and f.value.kind == "word"


def _strings(body: s.Block, key: str) -> list[str]:
    out: list[str] = []
    for f in body.fields(key):
        vals = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
        out.extend(str(v.value) for v in vals if isinstance(v, s.Scalar))
    return out


def _layers(spec: s.Spec) -> list[_Layer]:
    """The spec's layers (``input {}`` blocks included) in file order, typed."""
    out: list[_Layer] = []
    prev: dict[Phase, str | None] = {p: None for p in PHASES}
    first_input: dict[Phase, str | None] = {p: None for p in PHASES}
    for f in spec.items:
        if f.key == "input" and isinstance(f.value, s.Block):
            f = input_block_layer(f)
        elif f.key != "layer" or not isinstance(f.value, s.Block):
            continue
        body = f.value
        assert isinstance(body, s.Block)
        type_f = body.first("type")
        if type_f is None or not isinstance(type_f.value, s.Scalar):
            raise SpecError("layer needs a type", body.span, "e.g. type: Convolution")
        kind = lookup(str(type_f.value.value), type_f.value.span)
        names = _strings(body, "name")
        if not names:
            raise SpecError(f"{kind.name} layer needs a name", body.span, 'add name: "..."')
        name = names[0]
        params = convert_fields(kind.Params, body.items, f"{kind.name} layer '{name}'",
                                ignore=COMMON_FIELDS, extra_names=COMMON_FIELDS)
        own = {x.name for x in dataclasses.fields(kind.Params)}
        keys = list(dict.fromkeys(i.key for i in body.items
                                  if isinstance(i, s.Field) and i.key in own))
        tops = _strings(body, "top") or ([name] if kind.tops.min >= 1 else [])
        phases = tuple(p for p in PHASES if in_phase(body, p))
        implied = {p: first_input[p] or prev[p] for p in phases}
        for p in phases:  # build's rule: after a run of inputs, the first input
            prev[p] = tops[0] if tops else None
            first_input[p] = (first_input[p] or prev[p]) if kind.is_input else None
        out.append(_Layer(body, kind, name, params, keys, _strings(body, "bottom"), tops,
                          phases, implied))
    return out


def _bottoms(lay: _Layer, phase: Phase | None) -> list[str]:
    """The layer's bottoms in a phase: as written, else what build implies."""
    if lay.bottoms or lay.kind.bottoms.min < 1 or phase is None:
        return lay.bottoms
    b = lay.implied.get(phase)
    return [b] if b is not None else []


def _is_word(lay: _Layer, key: str) -> bool:
    """Whether a str field is one of Caffe's enums (``backend: LMDB``, ``engine: CAFFE``):
    written as a bare word, or a field whose default is an upper-case word."""
    default = _default(lay.kind.Params, key)
    return lay.word(key) or (isinstance(default, str) and re.fullmatch(r"[A-Z][A-Z0-9_]*",
                                                                         default) is not None)


def _spec_batch(layers: Sequence[_Layer]) -> int:
    """The batch the spec says (as ``build`` finds it: the first data layer's), else 0."""
    for lay in layers:
        if lay.kind.is_data:
            b = getattr(lay.params, "batch", 0) or getattr(lay.params, "batch_size", 0)
            if b:
                return int(b)
    return 0


def _rules(body: s.Block) -> list[s.Field]:
    return [f for f in body.items if isinstance(f, s.Field) and f.key in _RULES]


def _others(body: s.Block, skip: Iterable[str]) -> list[s.Field]:
    """Common layer fields other than wiring and rules, in order (param, loss_weight...)."""
    skip = set(skip)
    return [f for f in body.items if isinstance(f, s.Field) and f.key in COMMON_FIELDS
            and f.key not in skip]


def _default(cls: type, name: str) -> Any:
    f = next(x for x in dataclasses.fields(cls) if x.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# --------------------------------------------------------------------------- typed -> syntax


def _lit(v: Any, span: Span, word: bool = False) -> s.Scalar:
    """A typed value as a literal; ``word`` writes a str bare (an enum word in Caffe)."""
    if isinstance(v, bool):
        return s.Scalar("true" if v else "false", "word", span)
    if isinstance(v, FillerType):  # FillerParameter.type is a string in Caffe's proto
        return s.Scalar(v.value, "string", span)
    if isinstance(v, enum.Enum):
        return s.Scalar(v.name, "word", span)
    if isinstance(v, str):
        return s.Scalar(v, "word" if word and re.fullmatch(r"[A-Za-z_]\w*", v) else "string",
                        span)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
        return s.Scalar(int(v), "int", span)  # 1.0 reads as 1; float fields take ints
    if isinstance(v, int | float):
        return s.Scalar(v, "int" if isinstance(v, int) else "float", span)
    raise TypeError(f"netdsl bug: cannot write {v!r}")


def _changed(obj: Any) -> list[tuple[str, Any]]:
    """A dataclass's fields that differ from their defaults (``type`` always kept)."""
    out = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name == "type" or v != _default(type(obj), f.name):
            out.append((f.name, v))
    return out


# --------------------------------------------------------------------------- .net output


def _net_value(v: Any, span: Span, word: bool = False) -> s.Value:
    """A typed field value as .net syntax: lists as [...], fillers as calls."""
    if isinstance(v, Filler):
        return _filler_net(v, span)
    if dataclasses.is_dataclass(v):
        return s.Block(tuple(s.Field(k, _net_value(x, span), span, span)
                             for k, x in _changed(v)), span)
    if isinstance(v, tuple):
        if len(v) > 1 and all(isinstance(x, tuple) for x in v):
            # several shapes: one list each, [[3], [3]], never [3, 3] (one shape)
            return s.ListValue(tuple(s.ListValue(tuple(_net_value(y, span, word) for y in x),
                                                 span) for x in v), span)
        if len(v) == 1:  # kernel_size: 3, shape: [3, 224, 224]
            return _net_value(v[0], span, word)
        return s.ListValue(tuple(_net_value(x, span, word) for x in v), span)
    return _lit(v, span, word)


def _filler_net(f: Filler, span: Span) -> s.Value:
    """``gaussian(0.01)``, ``constant(0)``, ``xavier()``..., else a block."""
    f = canonical_filler(f)
    args = _filler_args().get(f.type)
    if args is None or any(k != "type" and k not in args for k, _ in _changed(f)):
        return s.Block(tuple(s.Field(k, _lit(x, span), span, span) for k, x in _changed(f)),
                       span)
    vals = [getattr(f, a) for a in args]
    if f.type is FillerType.gaussian and f.mean == 0:
        vals = vals[:1]
    return s.Call(f.type.value, tuple(_lit(x, span) for x in vals), span)


@lru_cache(maxsize=1)
def _filler_args() -> dict[FillerType, tuple[str, ...]]:
    """The positional arguments of resolve's filler constructors (``gaussian(std, mean)``),
    read off the blocks they build for 0..3 arguments rather than restated here."""
    span = Span("<netdsl>")
    out: dict[FillerType, tuple[str, ...]] = {}
    for kind in FillerType:
        fn = FUNCTIONS.get(kind.value)
        if fn is None:
            continue  # no constructor: written as a block
        for n in range(4):
            try:
                block = fn([s.Scalar(i + 1, "int", span) for i in range(n)], span)
            except SpecError:  # not that many arguments
                continue
            assert isinstance(block, s.Block)
            out[kind] = tuple(f.key for f in block.items if isinstance(f, s.Field)
                              and f.key != "type")
    return out


def _token(key: str, v: s.Value) -> str:
    return f"{key} {expr(v)}" if isinstance(v, s.Block) else f"{key}: {expr(v)}"


def _blobs(names: list[str]) -> str:
    if len(names) == 1:
        return quote(names[0])
    return "[" + ", ".join(quote(n) for n in names) + "]"


def _net_layer(lay: _Layer) -> list[str]:
    span = lay.body.span
    if _as_input_block(lay):
        toks = [f"name: {quote(lay.name)}"]
        toks += [_token(k, _net_value(getattr(lay.params, k), span)) for k in lay.keys]
        return ["input { " + "  ".join(toks) + " }"]
    implied = {lay.implied.get(p) for p in lay.phases}
    # build implies a bottom only for types that need one (not Python, which may have none)
    default_bottom = (lay.kind.bottoms.min >= 1 and len(implied) == 1
                      and len(lay.bottoms) == 1 and lay.bottoms == [next(iter(implied))])
    head: list[Token] = [f"name: {quote(lay.name)}", f"type: {lay.kind.name}"]
    if lay.bottoms and not default_bottom:
        head.append(f"bottom: {_blobs(lay.bottoms)}")
    if lay.tops and (lay.tops != [lay.name] or lay.kind.tops.min < 1):
        head.append(f"top: {_blobs(lay.tops)}")
    scalars: list[Token] = []
    blocks: list[Token] = []
    for k in lay.keys:
        v = getattr(lay.params, k)
        if v == _default(lay.kind.Params, k):
            continue
        val = _net_value(v, span, lay.word(k))
        if isinstance(val, s.Block):  # transform { ... }: may be broken over lines
            blocks.append((k, [_token(f.key, f.value) for f in val.items
                               if isinstance(f, s.Field)]))
        else:
            (blocks if dataclasses.is_dataclass(v) else scalars).append(_token(k, val))
    common: list[Token] = [_token(f.key, f.value) for f in _others(
        lay.body, ("name", "type", "bottom", "top", *_RULES, *_NET_ONLY))]
    rules = _rules(lay.body)
    ph = _single_phase(rules)
    common += [f"phase: {ph}"] if ph is not None else [_token(f.key, f.value) for f in rules]
    return _pack("layer { ", [head, scalars, blocks, common])


def _as_input_block(lay: _Layer) -> bool:
    """An Input layer that ``input { name: ... shape: ... }`` says exactly."""
    keys = {f.key for f in lay.body.items if isinstance(f, s.Field)}
    return (lay.kind.name == INPUT_TYPE and lay.tops == [lay.name]
            and keys <= {"name", "type", "top", "shape", "batch", "exact"})


def _single_phase(rules: list[s.Field]) -> str | None:
    """``include { phase: TEST }`` alone (or ``phase: TEST``) -> "TEST"."""
    if len(rules) != 1:
        return None
    f = rules[0]
    if f.key == "phase" and isinstance(f.value, s.Scalar):
        return str(f.value.value).upper()
    if f.key == "include" and isinstance(f.value, s.Block) and len(f.value.items) == 1:
        ph = f.value.scalar("phase")
        if ph is not None and str(ph).upper() in ("TRAIN", "TEST"):
            return str(ph).upper()
    return None


def _pack(opening: str, groups: list[list[Token]]) -> list[str]:
    """One line if it fits; else line by line, a group of fields kept on one line if it
    fits there (wiring, then scalars, then fillers and blocks, then param and phase). A
    block too long for a line continues under its first field."""
    def text(t: Token) -> str:
        return t if isinstance(t, str) else f"{t[0]} {{ {'  '.join(t[1])} }}"

    one = opening + "  ".join(text(t) for g in groups for t in g) + " }"
    if len(one) <= WIDTH:
        return [one]
    pad = " " * len(opening)
    lines: list[str] = []
    cur = ""

    def fits(line: str) -> bool:
        return len(pad) + len(line) + 2 <= WIDTH  # room for the closing " }"

    for g in groups:
        if not g:
            continue
        joined = "  ".join(text(t) for t in g)
        if cur and fits(f"{cur}  {joined}"):
            cur = f"{cur}  {joined}"
            continue
        if cur:
            lines.append(cur)
            cur = ""
        for t in g:
            if not isinstance(t, str) and not fits(text(t)):
                if cur:
                    lines.append(cur)
                inner = " " * (len(t[0]) + 3)
                cur = f"{t[0]} {{ "
                for i, f in enumerate(t[1]):
                    if i and not fits(f"{cur}  {f}"):
                        lines.append(cur)
                        cur = inner + f
                    else:
                        cur = f"{cur}  {f}" if i else cur + f
                cur += " }"
            elif cur and not fits(f"{cur}  {text(t)}"):
                lines.append(cur)
                cur = text(t)
            else:
                cur = f"{cur}  {text(t)}" if cur else text(t)
    lines.append(cur)
    return [(opening if i == 0 else pad) + x for i, x in enumerate(lines[:-1])] + [
        (opening if len(lines) == 1 else pad) + lines[-1] + " }"]


# --------------------------------------------------------------------------- prototxt output


def _field_block(kind: LayerType[Any], key: str, own: str) -> str:
    """The Caffe block a Params field is written in: its ``metadata["block"]`` if the
    type says (AnnotatedData's ``source`` is DataParameter's, not its own block's), else
    ``loss_param`` for Caffe's LossParameter fields of a loss, else the type's own."""
    f = next((x for x in dataclasses.fields(kind.Params) if x.name == key), None)
    block = f.metadata.get("block") if f is not None else None
    if block:
        assert kind.reads_param_block(str(block)), (kind.name, key, block)
        return str(block)
    if key in _LOSS_FIELDS and kind.reads_param_block("loss_param"):
        return "loss_param"
    return own


def _caffe_values(key: str, v: Any, span: Span, word: bool = False) -> list[s.Field]:
    """A typed field as Caffe fields: lists as repeated keys, shapes as ``shape { dim }``."""
    if v is None:
        return []
    if isinstance(v, tuple):
        if key == "shape":  # caffe_compat turns these blocks into lists; turn them back
            shapes = v if v and isinstance(v[0], tuple) else (v,)
            return [s.Field(key, _dims(x, span), span, span) for x in shapes]
        return [f for x in v for f in _caffe_values(key, x, span, word)]
    if dataclasses.is_dataclass(v):
        return [s.Field(key, _caffe_block(v, span), span, span)]
    return [s.Field(key, _lit(v, span, word), span, span)]


def _caffe_fields(obj: Any, span: Span) -> list[s.Field]:
    return [f for k, x in _changed(obj) for f in _caffe_values(k, x, span)]


def _caffe_block(obj: Any, span: Span) -> s.Block:
    return s.Block(tuple(_caffe_fields(obj, span)), span)


def _dims(dims: Iterable[int], span: Span) -> s.Block:
    return s.Block(tuple(s.Field("dim", _lit(d, span), span, span) for d in dims), span)


def _repeated(f: s.Field) -> list[s.Field]:
    """``loss_weight: [1, 0]`` -> two ``loss_weight`` fields, as protobuf wants."""
    if isinstance(f.value, s.ListValue):
        return [s.Field(f.key, v, f.span, f.key_span) for v in f.value.items]
    return [f]


def _caffe_layer(lay: _Layer, bottoms: list[str], batch: int, phase: Phase | None,
                 span: Span, rules: bool = True) -> s.Field:
    """One ``layer { ... }`` of a V2 NetParameter.

    ``phase``: write ``include { phase }`` instead of the layer's rules (a copy of a
    layer whose implied bottom differs between phases); else the rules, if ``rules``.
    """
    def field(key: str, v: s.Value) -> s.Field:
        return s.Field(key, v, span, span)

    def string(text: str) -> s.Scalar:
        return s.Scalar(text, "string", span)

    items: list[s.Field] = [field("name", string(lay.name)), field("type", string(lay.kind.name))]
    items += [field("bottom", string(b)) for b in bottoms]
    items += [field("top", string(t)) for t in lay.tops]
    if phase is not None:
        items.append(field("include", s.Block((field("phase", s.Scalar(
            phase.name, "word", span)),), span)))
    elif rules:
        for f in _rules(lay.body):
            if f.key == "phase" and isinstance(f.value, s.Scalar):
                items.append(field("include", s.Block((field("phase", s.Scalar(
                    str(f.value.value).upper(), "word", span)),), span)))
            else:
                items.append(f)
    for f in _others(lay.body, ("name", "type", "bottom", "top", *_RULES, *_NET_ONLY)):
        items += _repeated(f)
    blocks: dict[str, list[s.Field]] = {}
    own = param_block(lay.kind)
    for k in lay.keys:
        v = getattr(lay.params, k)
        if lay.kind.name == INPUT_TYPE and k in ("shape", "batch", "exact"):
            continue  # below: Caffe keeps the batch as the first dim
        if k in _LAYER_BLOCKS:
            blocks.setdefault(_LAYER_BLOCKS[k], []).extend(_caffe_fields(v, span))
            continue
        blocks.setdefault(_field_block(lay.kind, k, own), []).extend(
            _caffe_values(k, v, span, _is_word(lay, k)))
    if lay.kind.name == INPUT_TYPE:
        n = lay.params.batch or batch or 1
        lead = () if lay.params.exact else (n,)
        blocks.setdefault(own, []).extend(
            field("shape", _dims((*lead, *shp), span)) for shp in lay.params.shape)
    items += [field(k, s.Block(tuple(v), span)) for k, v in blocks.items()]
    return field("layer", s.Block(tuple(items), span))

