"""Stage 8: run each layer type's shape rule in order -> blob shapes, params, MACs.

Besides each type's own rule, every layer is held to what lowering needs, so that a net
``shapes`` accepts also compiles: its fillers' settings are ones Caffe's fillers take
(:func:`netdsl.fillers.problem`), and no top or parameter blob is larger than
:func:`max_blob_bytes` (``NETDSL_MAX_BLOB_BYTES``, default 1 TiB).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import fillers
from .diagnostics import NetdslError, ShapeError, SpecError, UsageError
from .ir import Layer, Net
from .layers.base import Filler, Shape, ShapeContext, count


@dataclass(frozen=True)
class LayerShapes:
    name: str
    type: str
    bottoms: tuple[Shape, ...]
    tops: tuple[Shape, ...]
    blobs: Mapping[str, Shape]  # parameter blob name -> Caffe shape
    params: int  # learned parameters (BatchNorm's statistics do not count)
    macs: int
    activation_bytes: int


@dataclass(frozen=True)
class ShapeTable:
    """Per-layer shapes in execution order, and each blob's final shape."""

    net: Net
    batch: int
    layers: tuple[LayerShapes, ...]
    blobs: Mapping[str, Shape]

    @property
    def total_params(self) -> int:
        return sum(ls.params for ls in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(ls.macs for ls in self.layers)

    @property
    def total_activation_bytes(self) -> int:
        return sum(ls.activation_bytes for ls in self.layers)

    def of(self, layer: str) -> LayerShapes:
        for ls in self.layers:
            if ls.name == layer:
                return ls
        raise KeyError(layer)


BYTES_PER_ELEMENT = 4  # float32

#: The default limit on one blob's bytes: 1 TiB (2^40). Above the memory of any one
#: accelerator (an H200 has 141 GB) and of most hosts, so no net that could run is refused,
#: while a slip such as ``num_output: 100000000000000`` is caught before lowering tries
#: to allocate it. ``NETDSL_MAX_BLOB_BYTES`` raises (or lowers) it; compiling also checks
#: the net against the memory its devices have.
MAX_BLOB_BYTES = 1 << 40
_INT64_MAX = 2**63 - 1
_LIMIT_ENV = "NETDSL_MAX_BLOB_BYTES"


def max_blob_bytes() -> int:
    """The byte limit on one blob: ``NETDSL_MAX_BLOB_BYTES`` if set (``2e12`` works), else
    :data:`MAX_BLOB_BYTES`; never above what an int64 element count allows."""
    text = os.environ.get(_LIMIT_ENV)
    if not text:
        return MAX_BLOB_BYTES
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        raise UsageError(f"{_LIMIT_ENV}={text!r} is not a number of bytes", None,
                         f"e.g. {_LIMIT_ENV}={MAX_BLOB_BYTES * 2}") from None
    if value < 1:
        raise UsageError(f"{_LIMIT_ENV}={text!r} must be a positive number of bytes", None,
                         f"the default is {MAX_BLOB_BYTES} (1 TiB)")
    return min(value, _INT64_MAX)


def human_bytes(n: int) -> str:
    """``1.5 TiB``, ``12.0 MiB``, ``512 bytes``."""
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20),
                        ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def _fillers_in(value: Any, field: str) -> Iterator[tuple[str, Filler]]:
    """Every Filler in a params value, with the top-level field it was written in."""
    if isinstance(value, Filler):
        yield field, value
    elif isinstance(value, tuple):
        for v in value:
            yield from _fillers_in(v, field)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _fillers_in(getattr(value, f.name), field)


def _field_of(params: Any, filler: Filler, blob: str) -> str:
    """The params field holding ``filler`` (for the caret), else Caffe's usual name."""
    if dataclasses.is_dataclass(params):
        for f in dataclasses.fields(params):
            if any(x is filler for _, x in _fillers_in(getattr(params, f.name), f.name)):
                return f.name
    return "bias_filler" if blob == "bias" else "weight_filler"


def _filler_error(ctx: ShapeContext, message: str, field: str, hint: str | None) -> SpecError:
    """A bad filler setting is an error in the spec (not in its shapes), at the field."""
    return SpecError(f"{ctx.type_name} '{ctx.layer}': {message}", ctx.where(field), hint)


def check_fillers(lay: Layer, tops: tuple[Shape, ...], pshapes: Mapping[str, Shape],
                  ctx: ShapeContext) -> None:
    """Each filler of the layer: its settings, then each learned blob's filler against the
    blob's shape; a problem is an error at the filler's field."""
    params = lay.params
    if dataclasses.is_dataclass(params):
        for f in dataclasses.fields(params):
            for name, filler in _fillers_in(getattr(params, f.name), f.name):
                bad = fillers.problem(filler)
                if bad is not None:
                    raise _filler_error(ctx, f"{name}: {bad}", name, bad.hint)
    for blob, filler in lay.kind.fillers(params).items():
        shape = pshapes.get(blob)
        bad = fillers.problem(filler, None if shape is None else tuple(shape))
        if bad is not None:
            name = _field_of(params, filler, blob)
            raise _filler_error(ctx, f"{blob} ({name}): {bad}", name, bad.hint)
    if not dataclasses.is_dataclass(params):
        return
    # A list of fillers that fill no parameter fills the tops (DummyData's data_filler):
    # one filler for every top, or one per top.
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if not (isinstance(value, tuple) and value
                and all(isinstance(v, Filler) for v in value)):
            continue
        pairs = (zip(value, tops, strict=True) if len(value) == len(tops)
                 else ((value[0], t) for t in tops) if len(value) == 1 else ())
        for (filler, shape), top in zip(pairs, lay.tops, strict=False):
            bad = fillers.problem(filler, tuple(shape))
            if bad is not None:
                raise _filler_error(ctx, f"top '{top}' ({f.name}): {bad}", f.name, bad.hint)


def check_sizes(lay: Layer, tops: tuple[Shape, ...], pshapes: Mapping[str, Shape],
                ctx: ShapeContext, limit: int) -> None:
    """Every top and parameter blob of the layer within ``limit`` bytes (float32)."""
    size_field = next((f for f in ("num_output", "shape", "dim") if f in ctx.field_spans), None)
    blobs: list[tuple[str, str, Shape, str | None]] = [
        ("top", name, shape, size_field or "top")
        for name, shape in zip(lay.tops, tops, strict=True)]
    blobs += [("parameter", f"{lay.name}.{b}", s, size_field) for b, s in pshapes.items()]
    for what, name, shape, field in blobs:
        n = count(shape)
        nbytes = n * BYTES_PER_ELEMENT
        if nbytes > limit:
            raise ctx.error(
                f"{what} '{name}' {list(shape)} would take {nbytes:,} bytes "
                f"({human_bytes(nbytes)}), over the {human_bytes(limit)} limit on a blob",
                field if field in ctx.field_spans else None,
                f"{n:,} float32 elements; if it is meant: {_LIMIT_ENV}={nbytes}")


def infer_shapes(net: Net, batch: int | None = None,
                 inputs: Mapping[str, Shape] | None = None) -> ShapeTable:
    """Shapes for a batch of ``batch`` examples (default: what the spec says, else 1).

    ``inputs`` gives the per-example shape (C, H, W) of data tops whose shape the spec
    cannot know (Caffe's Data layer reads it from its database).
    """
    b = batch or net.batch or 1
    inputs = dict(inputs or {})
    known = {t for lay in net.layers
             if lay.kind.is_input or (lay.kind.takes_input_shapes and not lay.bottoms)
             for t in lay.tops}
    for name in inputs:
        if name not in known:
            raise ShapeError(
                f"--input names '{name}', which is not a data blob of this net",
                None, "data blobs: " + (", ".join(sorted(known)) or "none"),
            )
    blobs: dict[str, Shape] = {}
    shared: dict[str, tuple[Shape, str]] = {}
    rows = []
    limit = max_blob_bytes()
    for lay in net.layers:
        kind = lay.kind
        bottoms = tuple(blobs[x] for x in lay.bottoms)
        ctx = ShapeContext(lay.name, lay.type, lay.span, lay.field_spans, lay.tops, b, inputs,
                           notes=lay.notes, phase=net.phase)
        try:
            tops = tuple(tuple(int(d) for d in t) for t in kind.shape(lay.params, bottoms, ctx))
            if len(tops) != len(lay.tops):
                raise ctx.error(f"made {len(tops)} shapes for {len(lay.tops)} tops")
            for t in tops:
                if any(d < 0 for d in t):
                    raise ctx.error(f"a top would have the impossible shape {list(t)}")
            pshapes = kind.param_shapes(lay.params, bottoms) if bottoms or kind.blobs else {}
            check_sizes(lay, tops, pshapes, ctx, limit)
            check_fillers(lay, tops, pshapes, ctx)
            n_params = _count_params(lay, pshapes, shared, ctx) if kind.learned else 0
            macs = kind.macs(lay.params, bottoms, tops)
        except NetdslError as e:
            for note in lay.notes:
                e.with_note(*note)
            raise
        for name, shape in zip(lay.tops, tops, strict=True):
            blobs[name] = shape
        act = sum(count(t) for t in tops) * BYTES_PER_ELEMENT
        rows.append(LayerShapes(lay.name, lay.type, bottoms, tops, pshapes, n_params, macs, act))
    return ShapeTable(net, b, tuple(rows), blobs)


def _count_params(lay: Layer, pshapes: Mapping[str, Shape], shared: dict[str, tuple[Shape, str]],
                  ctx: ShapeContext) -> int:
    """Learnable parameters, counting a blob shared by name (ParamSpec.name) once."""
    total = 0
    for i, (blob, shape) in enumerate(pshapes.items()):
        share = lay.param_spec(i).name
        if share:
            if share in shared:
                other, owner = shared[share]
                if count(other) != count(shape):
                    raise ctx.error(
                        f"shares param '{share}' with '{owner}', but its {blob} has shape "
                        f"{list(shape)} and the shared one {list(other)}", "param")
                continue
            shared[share] = (shape, lay.name)
        total += count(shape)
    return total
