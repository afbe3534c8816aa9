"""Stage 4: Caffe's own forms rewritten into netdsl's, keeping spans.

Like Caffe's upgrade_proto.cpp, this runs before anything else looks at a net:

* V0 ``layers { layer { type: "conv" kernelsize: 11 } }`` becomes V1 first, as Caffe's
  ``UpgradeV0Net`` does (:mod:`netdsl.caffe_v0`);
* V1 ``layers { type: CONVOLUTION blobs_lr: 1 weight_decay: 1 }`` becomes a V2
  ``layer`` with ``param { lr_mult decay_mult }`` blocks (the enum spelling of the type
  is resolved later through the registry's ``caffe_names``);
* every ``<kind>_param { ... }`` block inside a layer is flattened into the layer, so a
  .net file writes ``num_output: 96`` directly (``transform_param`` becomes ``transform``);
* ``shape { dim: ... }`` blocks become ``shape: [...]`` lists; an Input layer's leading
  (batch) dimension moves to its ``batch`` field, as netdsl shapes are per example,
  unless it is not the net's batch (then the shapes stay whole, ``exact: true``);
* the top-level ``input:`` / ``input_dim:`` / ``input_shape {}`` become Input layers;
* a solver file (Caffe's SolverParameter at the top level) becomes ``solver { ... }``;
* in a Caffe file (any but .net), unnamed layers get names and layers sharing a name
  in a phase get distinct ones, as Caffe itself asks for neither.

netdsl's own forms pass through unchanged, so the pass is idempotent.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Any

from . import syntax as s
from .caffe_v0 import is_v0, upgrade_v0
from .diagnostics import Span, SpecError, raise_all
from .layers import INPUT_TYPE, REGISTRY, TYPES
from .layers.base import LayerType

_KEEP_BLOCKS = {"param", "include", "exclude", "weight_filler", "bias_filler", "filler"}
RENAME_BLOCKS = {"transform_param": "transform"}


def _field(key: str, value: s.Value, span: Span) -> s.Field:
    return s.Field(key, value, span, span)


def _dims(block: s.Block) -> s.ListValue | None:
    """``shape { dim: 1 dim: 3 }`` -> ``[1, 3]``; None if the block holds anything else."""
    if any(not (isinstance(i, s.Field) and i.key == "dim") for i in block.items):
        return None
    items: list[s.Value] = []
    for f in block.items:
        assert isinstance(f, s.Field)
        items.extend(f.value.items if isinstance(f.value, s.ListValue) else (f.value,))
    return s.ListValue(tuple(items), block.span)


def _shape_lists(items: tuple[s.Item, ...]) -> tuple[s.Item, ...]:
    out: list[s.Item] = []
    for i in items:
        if isinstance(i, s.Field) and i.key == "shape" and isinstance(i.value, s.Block):
            dims = _dims(i.value)
            if dims is not None:
                i = s.Field(i.key, dims, i.span, i.key_span, i.notes)
        out.append(i)
    return tuple(out)


def _layer_type(layer: s.Block) -> LayerType[Any] | None:
    t = layer.scalar("type")
    return None if t is None else REGISTRY.get(str(t))


def _flatten_params(layer: s.Block, errors: list[SpecError]) -> s.Block:
    kind = _layer_type(layer)
    out: list[s.Item] = []
    seen: dict[str, tuple[str, s.Field]] = {}
    blobs_lr: list[s.Field] = []
    decays: list[s.Field] = []
    for item in layer.items:
        if not isinstance(item, s.Field):
            out.append(item)
            continue
        key = item.key
        if key == "blobs_lr":
            blobs_lr.append(item)
            continue
        if key == "weight_decay":
            decays.append(item)
            continue
        if isinstance(item.value, s.Block) and key in RENAME_BLOCKS:
            out.append(s.Field(RENAME_BLOCKS[key], item.value, item.span, item.key_span))
            continue
        if isinstance(item.value, s.Block) and key.endswith("_param") and key not in _KEEP_BLOCKS:
            if _is_type_field(kind, key):
                out.append(item)  # nms_param { } of DetectionOutput: a field, not a block
                continue
            if kind is not None and not kind.reads_param_block(key) and key in _caffe_blocks():
                continue  # Caffe ignores another type's param block
            for inner in _shape_lists(item.value.items):
                if isinstance(inner, s.Field):
                    prev = seen.get(inner.key)
                    if prev is not None and prev[0] != key:
                        errors.append(SpecError(
                            f"'{inner.key}' is set both in {prev[0]} and in {key}",
                            inner.key_span,
                        ))
                    seen[inner.key] = (key, inner)
                out.append(inner)
            continue
        out.append(item)
    if blobs_lr or decays:
        n = max(len(blobs_lr), len(decays))
        for idx in range(n):
            mults: list[s.Item] = []
            if idx < len(blobs_lr):
                f = blobs_lr[idx]
                mults.append(s.Field("lr_mult", f.value, f.span, f.key_span))
            if idx < len(decays):
                f = decays[idx]
                mults.append(s.Field("decay_mult", f.value, f.span, f.key_span))
            span = mults[0].span
            out.append(_field("param", s.Block(tuple(mults), span), span))
    return s.Block(_shape_lists(tuple(out)), layer.span)


def _input_layers(items: tuple[s.Item, ...], errors: list[SpecError],
                  net: _Batch) -> list[s.Field]:
    """Top-level ``input:`` with ``input_dim:`` (4 per input) or ``input_shape {}``."""
    names = [f for f in items if isinstance(f, s.Field) and f.key == "input"]
    if not names:
        return []
    dims = [f for f in items if isinstance(f, s.Field) and f.key == "input_dim"]
    shapes = [f for f in items if isinstance(f, s.Field) and f.key == "input_shape"]
    layers: list[s.Field] = []
    for idx, name in enumerate(names):
        if shapes:
            shape = shapes[idx].value if idx < len(shapes) else None
            if not isinstance(shape, s.Block):
                errors.append(SpecError(f"input {idx + 1} has no input_shape", name.span))
                continue
            dl = _dims(shape)
            values = list(dl.items) if dl else []
        else:
            chunk = dims[4 * idx: 4 * idx + 4]
            if len(chunk) != 4:
                what = (f"input '{name.value.value}'" if isinstance(name.value, s.Scalar)
                        else f"input {idx + 1}")
                errors.append(SpecError(
                    f"{what} needs 4 input_dim values (N, C, H, W), found {len(chunk)}",
                    name.span,
                ))
                continue
            values = [f.value for f in chunk]
        span = name.span
        body = [
            _field("name", name.value, span),
            _field("type", s.Scalar(INPUT_TYPE, "word", span), span),
            _field("top", name.value, span),
        ]
        if values:
            body.append(_field("shape", s.ListValue(tuple(values), span), span))
        layers.append(_field("layer", _input_batch(s.Block(tuple(body), span), net), span))
    return layers


class _Batch:
    """The net's batch as a Caffe file gives it: the first dimension of its first Input
    shape (set by the first Caffe Input the pass meets)."""

    def __init__(self) -> None:
        self.value: object = None


def _input_batch(layer: s.Block, net: _Batch) -> s.Block:
    """Caffe shapes include the batch; netdsl's Input shapes do not.

    A Caffe Input layer whose shapes all start with the net's batch loses that first
    dimension to its ``batch`` field (so ``--batch`` changes it). One whose shapes start
    otherwise (an LSTM net's T x N x F sequence beside its N x F static input and
    1 x N x H state) keeps them whole, as Caffe does, with ``exact: true``.
    """
    shapes = layer.fields("shape")
    if not shapes or layer.first("batch") is not None or layer.first("exact") is not None:
        return layer
    lists = [i.value for i in shapes if isinstance(i.value, s.ListValue) and i.value.items]
    firsts = [_number(v.items[0]) for v in lists]
    if not firsts:
        return layer
    if net.value is None:
        net.value = firsts[0]
    if None not in firsts and any(f != net.value for f in firsts):
        true = s.Scalar("true", "word", layer.span)
        return s.Block((*layer.items, _field("exact", true, layer.span)), layer.span)
    batch: s.Value | None = None
    items: list[s.Item] = []
    for i in layer.items:
        if isinstance(i, s.Field) and i.key == "shape" and isinstance(i.value, s.ListValue):
            if i.value.items:
                batch = batch or i.value.items[0]
                i = s.Field("shape", s.ListValue(i.value.items[1:], i.value.span), i.span,
                            i.key_span)
        items.append(i)
    if batch is not None:
        items.append(_field("batch", batch, batch.span))
    return s.Block(tuple(items), layer.span)


def _number(v: s.Value) -> object:
    """A literal dimension's value (None for anything else: a variable, a call, which
    keeps the old rule: the first dimension is the batch)."""
    return v.value if isinstance(v, s.Scalar) and v.kind == "int" else None


def _has_caffe_shapes(layer: s.Block) -> bool:
    """Caffe writes Input shapes as ``shape { dim: N dim: C ... }`` blocks, batch first;
    netdsl writes per-example lists ``shape: [C, H, W]``."""
    if layer.first("input_param") is not None:
        return True
    return any(isinstance(f.value, s.Block) for f in layer.fields("shape"))


def _type_word(layer: s.Block) -> str | None:
    t = layer.scalar("type")
    return None if t is None else str(t)


def _is_type_field(kind: LayerType[Any] | None, key: str) -> bool:
    """Whether a ``*_param`` block is a field of the layer type's Params (SSD's
    ``nms_param``, nested in ``detection_output_param`` in Caffe, written in the layer in
    a .net file), so it stays a block. With no known type (an ``update`` body), any
    type's such field that is no type's Caffe block."""
    if kind is not None:
        return key in {f.name for f in dataclasses.fields(kind.Params)}
    return key in _nested_fields() and key not in _caffe_blocks()


@lru_cache(maxsize=1)
def _nested_fields() -> frozenset[str]:
    """The ``*_param`` names that are fields of some registered type's Params."""
    return frozenset(f.name for t in TYPES.values() for f in dataclasses.fields(t.Params)
                     if f.name.endswith("_param"))


@lru_cache(maxsize=1)
def _caffe_blocks() -> frozenset[str]:
    """Every ``*_param`` block name some registered layer type reads."""
    names = {"loss_param", "transform_param"}
    for t in TYPES.values():
        names.update(t.caffe_params)
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", t.name).lower()
        names.add(f"{snake}_param")
        names.add(f"{t.name.lower()}_param")
    return frozenset(names)


def _is_caffe_input(item: s.Item) -> bool:
    if not isinstance(item, s.Field):
        return False
    if item.key in ("input", "input_dim"):
        return isinstance(item.value, s.Scalar)
    return item.key == "input_shape"


#: Keys that only a Caffe SolverParameter file has at its top level.
_SOLVER_KEYS = {"base_lr", "lr_policy", "max_iter", "net", "train_net", "solver_mode",
                "snapshot_prefix", "test_interval", "solver_type"}
_NET_KEYS = {"layer", "layers", "input", "input_dim", "input_shape"}


def _solver_file(file: s.File) -> s.File | None:
    """A Caffe ``*solver.prototxt`` (SolverParameter at top level) as ``solver { ... }``."""
    keys = {i.key for i in file.items if isinstance(i, s.Field)}
    if not keys & _SOLVER_KEYS or keys & _NET_KEYS:
        return None
    if any(not isinstance(i, s.Field) for i in file.items):
        return None
    body = s.Block(file.items, file.span)
    return s.File(file.path, (s.Field("solver", body, file.span, file.span),), file.span)


def upgrade(file: s.File) -> s.File:
    """Rewrite Caffe V0/V1/V2 prototxt forms into netdsl's form (idempotent)."""
    solver = _solver_file(file)
    if solver is not None:
        return solver
    if is_v0(file):
        file = upgrade_v0(file)
    errors: list[SpecError] = []
    items: list[s.Item] = []
    input_done = False
    net = _Batch()
    for item in file.items:
        if _is_caffe_input(item):
            if not input_done:
                items.extend(_input_layers(file.items, errors, net))
                input_done = True
            continue
        items.append(_upgrade_item(item, errors, net))
    raise_all(errors)
    if not file.path.endswith(".net"):
        items = _caffe_names(items)
    return s.File(file.path, tuple(items), file.span)


_PHASES = frozenset({"TRAIN", "TEST"})


def _phases(layer: s.Block) -> frozenset[str]:
    """The phases a layer may be in, from its phase rules alone (levels and stages are
    ignored: this only decides which same-named layers could meet)."""
    def named(key: str) -> list[str | None]:
        out: list[str | None] = []
        for f in layer.fields(key):
            ph = f.value.scalar("phase") if isinstance(f.value, s.Block) else None
            out.append(None if ph is None else str(ph).upper())
        return out

    short = layer.scalar("phase")
    includes = named("include") + ([str(short).upper()] if short is not None else [])
    if includes:
        return _PHASES if None in includes else frozenset(x for x in includes if x) & _PHASES
    return _PHASES - frozenset(x for x in named("exclude") if x is not None)


def _caffe_names(items: list[s.Item]) -> list[s.Item]:
    """Names for a Caffe file's layers that netdsl can tell apart.

    Caffe's ``Net::Init`` requires neither a name nor a unique one: HED's train_val
    leaves its losses unnamed, its deploy names five Crop layers 'crop'. An unnamed layer
    is named after its first top (else its type); of layers sharing a name in a phase,
    the last keeps it (as in Caffe, whose by-name lookups find the last) and the others
    get ``_1``, ``_2``... Each renamed layer carries a note saying so.
    """
    layers = [(i, it.value) for i, it in enumerate(items) if isinstance(it, s.Field)
              and it.key == "layer" and isinstance(it.value, s.Block)]
    names = {i: body.scalar("name") for i, body in layers}
    taken = {str(n) for n in names.values() if n is not None}
    phases = {i: _phases(body) for i, body in layers}
    new: dict[int, tuple[str, str]] = {}

    def fresh(stem: str) -> str:
        n = 1
        while f"{stem}_{n}" in taken:
            n += 1
        taken.add(f"{stem}_{n}")
        return f"{stem}_{n}"

    for pos, (i, body) in enumerate(layers):
        name = names[i]
        if name is None:
            tops = body.fields("top")
            top = tops[0].value if tops else None
            stem = str(top.value) if isinstance(top, s.Scalar) else str(body.scalar("type"))
            new[i] = (stem if stem not in taken else fresh(stem), "the layer has no name")
            taken.add(new[i][0])
            continue
        later = [j for j, _ in layers[pos + 1:] if names[j] == name and phases[i] & phases[j]]
        if later:
            new[i] = (fresh(str(name)), f"it shares the name '{name}' with a later layer")
    out = list(items)
    for i, (name, why) in new.items():
        field = items[i]
        assert isinstance(field, s.Field) and isinstance(field.value, s.Block)
        body = field.value
        kept = tuple(x for x in body.items if not (isinstance(x, s.Field) and x.key == "name"))
        name_f = _field("name", s.Scalar(name, "string", body.span), body.span)
        note = (f"netdsl named this Caffe layer '{name}': {why}", body.span)
        out[i] = s.Field(field.key, s.Block((name_f, *kept), body.span), field.span,
                         field.key_span, (*field.notes, note))
    return out


def _upgrade_item(item: s.Item, errors: list[SpecError], net: _Batch) -> s.Item:
    if isinstance(item, s.Field) and item.key in ("layer", "layers") \
            and isinstance(item.value, s.Block):
        caffe_shapes = _has_caffe_shapes(item.value)
        body = _flatten_params(item.value, errors)
        if caffe_shapes and REGISTRY.get(str(_type_word(body))) is REGISTRY[INPUT_TYPE]:
            body = _input_batch(body, net)
        return s.Field("layer", body, item.span, item.key_span, item.notes)
    if isinstance(item, s.GroupDef | s.Repeat | s.Replace | s.Update | s.Insert):
        body = item.body
        new_items = tuple(_upgrade_item(i, errors, net) for i in body.items)
        if isinstance(item, s.Replace | s.Update):
            new_items = _flatten_params(s.Block(new_items, body.span), errors).items
        return _with_body(item, s.Block(new_items, body.span))
    return item


_WithBody = s.GroupDef | s.Repeat | s.Replace | s.Update | s.Insert


def _with_body(item: _WithBody, body: s.Block) -> _WithBody:
    return dataclasses.replace(item, body=body)
