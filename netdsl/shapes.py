"""Stage 8: run each layer type's shape rule in order -> blob shapes, params, MACs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .diagnostics import NetdslError, ShapeError
from .ir import Layer, Net
from .layers.base import Shape, ShapeContext, count


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
