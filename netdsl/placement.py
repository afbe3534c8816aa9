"""Stage 9: ``ir.Net`` + ``ShapeTable`` -> :class:`Plan`: per-device shards and transfers.

Pure data, no torch. For every layer the plan says which device computes which part of
its output (its *shards*), and for every bottom of every shard what that shard needs of
the bottom and where it comes from:

* ``none``: the input is already on the shard's device in the layout it needs (AlexNet's
  conv2/conv4/conv5: ``group == devices``, so each device holds exactly its groups'
  input channels);
* ``gather``: the shard needs channels of a sharded blob that other devices hold
  (conv3 and the fully connected layers need every input channel);
* ``halo``: an LRN across channels on a channel-sharded blob needs the neighbouring
  ``(local_size - 1) / 2`` channels of the adjacent devices, so that its result equals
  the one-device result exactly (``kernels.lrn.lrn_shard``);
* ``copy``: the blob is held whole by another device.

How a layer divides is its type's answer to ``sharding(params, bottoms)``
(``layers.base.Sharding``); this module never names a layer type:

* ``Split.CHANNELS``: the tops' divided axis (``outputs`` entries) is divided evenly
  between the layer's devices; with groups, each device gets whole groups and then
  needs only those groups' input channels.
* ``Split.FOLLOW``: a layer runs where its input is. With ``Follow.ELEMENTWISE`` it runs
  shard for shard on an input divided along any axis; with ``Follow.CHANNELS`` on an
  input divided by channels (a 4-D blob), each shard also reading its ``halo`` of
  neighbouring channels; with ``Follow.NONE`` it runs whole, on the device that holds
  its input, or else on its first device.
* ``Split.REPLICATE``: the whole layer runs on the layer's first device, gathering what
  it reads there. A layer that ``computes`` nothing (Silence) gets no shard.

Data tops live on the first device; a consumer elsewhere records a copy. A blob
gathered or copied to a device once is kept there for later readers of the same value
(the plan records the transfer once). The net's outputs are gathered to the net's first
device.

``plan(net, shapes, device_map)`` can also merge shards: given the physical device each
logical device runs on, adjacent shards that land on one physical device become one
shard (a 2-device AlexNet on one GPU runs conv2 as a single ``groups=2`` convolution),
and the plan is then in physical device names. Divisibility is always checked against
the logical devices, so a spec that cannot be placed fails the same way everywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .diagnostics import PlacementError
from .ir import Layer, Net
from .layers.base import Follow, Shape, Sharding, Split, count
from .shapes import BYTES_PER_ELEMENT, ShapeTable

__all__ = [
    "Input",
    "LayerPlan",
    "Layout",
    "Need",
    "Piece",
    "Plan",
    "Shard",
    "Transfer",
    "plan",
]

class Need(enum.Enum):
    """What a shard needs of one bottom (see the module docstring)."""

    NONE = "none"
    GATHER = "gather"
    HALO = "halo"
    COPY = "copy"


@dataclass(frozen=True)
class Transfer:
    """One move of a channel range of a blob from one device to another."""

    src: str
    dst: str
    blob: str
    channels: tuple[int, int]  # [start, stop) along the blob's split axis
    bytes_per_image: int  # float32

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "blob": self.blob,
                "channels": list(self.channels), "bytes_per_image": self.bytes_per_image}


@dataclass(frozen=True)
class Piece:
    """A contiguous part of a shard's input, read from a tensor held on ``device``."""

    device: str
    start: int
    stop: int


@dataclass(frozen=True)
class Input:
    """What one shard needs of one bottom, and where the parts come from.

    ``channels`` is the range the shard reads along ``axis``; for an LRN shard, its own
    range widened by ``halo = (below, above)`` neighbouring channels (kind ``halo`` when
    they come from another device, ``none`` if they happen to be local already). The
    pieces, in order, tile ``channels``; those read from another device are the
    ``transfers``.
    """

    bottom: str
    kind: Need
    axis: int
    channels: tuple[int, int]
    pieces: tuple[Piece, ...]
    transfers: tuple[Transfer, ...]
    halo: tuple[int, int] = (0, 0)

    @property
    def bytes_per_image(self) -> int:
        return sum(t.bytes_per_image for t in self.transfers)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bottom": self.bottom, "kind": self.kind.value,
                               "axis": self.axis, "channels": list(self.channels),
                               "transfers": [t.to_json() for t in self.transfers]}
        if self.halo != (0, 0):
            out["halo"] = list(self.halo)
        return out


@dataclass(frozen=True)
class Shard:
    """The part of a layer one device computes.

    ``channels`` is the output range along the tops' split axis for a layer divided by
    channels (or following a divided input), ``None`` for a layer that runs whole.
    ``logical`` lists the logical devices whose shards this one computes (several when
    shards were merged onto one physical device).
    """

    device: str
    channels: tuple[int, int] | None
    inputs: tuple[Input, ...]
    logical: tuple[str, ...]

    @property
    def bytes_per_image(self) -> int:
        return sum(i.bytes_per_image for i in self.inputs)


@dataclass(frozen=True)
class Layout:
    """How a blob is held: ``parts`` ``(device, start, stop)`` tile ``[0, size)`` of
    ``axis``; one part covering everything is a whole tensor on one device."""

    axis: int
    size: int
    parts: tuple[tuple[str, int, int], ...]

    @property
    def whole(self) -> bool:
        return len(self.parts) == 1

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for d, _, _ in self.parts))


@dataclass(frozen=True)
class LayerPlan:
    name: str
    type: str
    split: Split
    shards: tuple[Shard, ...]
    tops: tuple[Layout, ...]

    @property
    def bytes_per_image(self) -> int:
        return sum(s.bytes_per_image for s in self.shards)

    @property
    def transfers(self) -> tuple[Transfer, ...]:
        return tuple(t for s in self.shards for i in s.inputs for t in i.transfers)


@dataclass(frozen=True)
class Plan:
    """Where every layer's shards run and every cross-device transfer, in layer order.

    ``outputs`` gathers the net's output blobs onto ``devices[0]``.
    """

    net: str
    devices: tuple[str, ...]
    layers: tuple[LayerPlan, ...]
    outputs: tuple[Input, ...]
    logical: bool = True  # device names are the spec's logical ones (no device_map)

    def layer(self, name: str) -> LayerPlan:
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise KeyError(name)

    @property
    def transfers(self) -> tuple[Transfer, ...]:
        return (*(t for lp in self.layers for t in lp.transfers),
                *(t for i in self.outputs for t in i.transfers))

    @property
    def bytes_per_image(self) -> int:
        return sum(t.bytes_per_image for t in self.transfers)

    def to_json(self) -> dict[str, Any]:
        """The ``placement`` entry of ``netdsl shapes --placement --format json``."""
        return {
            "devices": list(self.devices),
            "layers": [{
                "name": lp.name,
                "type": lp.type,
                "split": lp.split.value,
                "shards": [{
                    "device": s.device,
                    "logical": list(s.logical),
                    "channels": None if s.channels is None else list(s.channels),
                    "inputs": [i.to_json() for i in s.inputs],
                    "bytes_per_image": s.bytes_per_image,
                } for s in lp.shards],
                "bytes_per_image": lp.bytes_per_image,
            } for lp in self.layers],
            "outputs": [i.to_json() for i in self.outputs],
            "total_bytes_per_image": self.bytes_per_image,
        }

    def print(self, console: Any) -> None:
        """A rich table: layer, shard -> device, channels, transfers in, bytes per image."""
        from rich import box
        from rich.table import Table
        from rich.text import Text

        narrow = getattr(console, "width", 200) < 120  # as the shapes table: no frame
        t = Table(title=Text(f"placement on {', '.join(self.devices)}"), header_style="bold",
                  show_footer=True, box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
                  show_edge=not narrow, padding=(0, 0, 0, 1) if narrow else (0, 1))
        t.add_column("layer", footer="total")
        t.add_column("shard → device")
        t.add_column("channels")
        t.add_column("transfers in")
        t.add_column("bytes/image", justify="right", footer=f"{self.bytes_per_image:,}")
        for lp in self.layers:
            for k, s in enumerate(lp.shards):
                ch = "all" if s.channels is None else f"{s.channels[0]}–{s.channels[1]}"
                moves = [_describe(i) for i in s.inputs if i.kind is not Need.NONE]
                t.add_row(Text(lp.name if k == 0 else ""), Text(f"{k} → {s.device}"), Text(ch),
                          Text("; ".join(moves) or "none"),
                          Text(f"{s.bytes_per_image:,}" if s.bytes_per_image else ""))
        for i in self.outputs:
            if i.transfers:
                t.add_row(Text("(outputs)"), Text(f"→ {self.devices[0]}"), Text("all"),
                          Text(_describe(i)), Text(f"{i.bytes_per_image:,}"))
        console.print(t)


def _describe(i: Input) -> str:
    srcs = ", ".join(f"{t.channels[0]}–{t.channels[1]} from {t.src}" for t in i.transfers)
    return f"{i.bottom}: {i.kind.value} {srcs}"


# --------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------


@dataclass
class _Blob:
    """A blob's current value during planning: its layout plus cached copies."""

    shape: Shape
    layout: Layout
    segments: list[tuple[str, int, int]]  # layout parts first, then copies made since


def _split_axis_size(shape: Shape, axis: int) -> int:
    return shape[axis] if len(shape) > axis else 1


def _unit_bytes(shape: Shape, size: int) -> int:
    """Bytes per image of one index along the split axis (float32)."""
    return count(shape[1:]) // max(size, 1) * BYTES_PER_ELEMENT


def _whole(shape: Shape, device: str) -> Layout:
    size = _split_axis_size(shape, 1)
    return Layout(1, size, ((device, 0, size),))


def _even_ranges(n: int, k: int) -> list[tuple[int, int]]:
    step = n // k
    return [(i * step, (i + 1) * step) for i in range(k)]


class _Planner:
    def __init__(self, net: Net, shapes: ShapeTable, device_map: Mapping[str, str] | None):
        self.net, self.shapes = net, shapes
        self.map = dict(device_map) if device_map is not None else None
        self.blobs: dict[str, _Blob] = {}

    def phys(self, logical: str) -> str:
        return logical if self.map is None else self.map[logical]

    # --- assembling an input -----------------------------------------------------------

    def need(self, blob: str, dst: str, lo: int, hi: int, halo_layer: bool = False,
             halo: tuple[int, int] = (0, 0)) -> Input:
        """Pieces for range [lo, hi) of ``blob`` on ``dst``; records the copy it makes."""
        b = self.blobs[blob]
        segs = b.segments
        pieces: list[Piece] = []
        x = lo
        while x < hi:
            local = [s for s in segs if s[0] == dst and s[1] <= x < s[2]]
            if local:
                end = min(hi, max(s[2] for s in local))
                pieces.append(Piece(dst, x, end))
            else:
                nxt = min((s[1] for s in segs if s[0] == dst and x < s[1] < hi), default=hi)
                part = next(p for p in b.layout.parts if p[1] <= x < p[2])
                end = min(nxt, part[2])
                pieces.append(Piece(part[0], x, end))
            x = end
        unit = _unit_bytes(b.shape, b.layout.size)
        transfers = tuple(
            Transfer(p.device, dst, blob, (p.start, p.stop), (p.stop - p.start) * unit)
            for p in pieces if p.device != dst
        )
        if not transfers:
            kind = Need.NONE
        elif halo_layer:
            kind = Need.HALO
        elif b.layout.whole:
            kind = Need.COPY
        else:
            kind = Need.GATHER
        if transfers:
            segs.append((dst, lo, hi))
        return Input(blob, kind, b.layout.axis, (lo, hi), tuple(pieces), transfers, halo)

    def need_all(self, blob: str, dst: str) -> Input:
        return self.need(blob, dst, 0, self.blobs[blob].layout.size)

    # --- one layer ---------------------------------------------------------------------

    def layer(self, lay: Layer, index: int) -> LayerPlan:
        kind = lay.kind
        row = self.shapes.layers[index]
        if not lay.bottoms:
            dev = self.phys(lay.devices[0])
            shard = Shard(dev, None, (), (lay.devices[0],))
            return LayerPlan(lay.name, lay.type, kind.split, (shard,),
                             tuple(_whole(t, dev) for t in row.tops))
        rule = kind.sharding(lay.params, row.bottoms)
        if not rule.computes:
            return LayerPlan(lay.name, lay.type, rule.split, (), ())
        if rule.split is Split.CHANNELS:
            return self.channels(lay, rule, row.bottoms, row.tops)
        if rule.split is Split.FOLLOW and len(lay.bottoms) == 1:
            follow = self.follow(lay, rule, row.bottoms[0], row.tops)
            if follow is not None:
                return follow
        return self.whole(lay, rule.split, row.tops)

    def whole(self, lay: Layer, split: Split, tops: tuple[Shape, ...]) -> LayerPlan:
        """Run the layer whole on one device, gathering every bottom there."""
        logical = lay.devices[0]
        if split is Split.FOLLOW:
            # Follow the input if it is whole on one of the layer's devices.
            held = {self.blobs[b].layout.parts[0][0] for b in lay.bottoms
                    if self.blobs[b].layout.whole}
            cands = [d for d in lay.devices if self.phys(d) in held]
            if len(held) == 1 and cands:
                logical = cands[0]
        dev = self.phys(logical)
        inputs = tuple(self.need_all(b, dev) for b in lay.bottoms)
        shard = Shard(dev, None, inputs, (logical,))
        return LayerPlan(lay.name, lay.type, split, (shard,),
                         tuple(_whole(t, dev) for t in tops))

    def follow(self, lay: Layer, rule: Sharding, bottom_shape: Shape,
               top_shapes: tuple[Shape, ...]) -> LayerPlan | None:
        """Shard for shard on a divided input, or ``None`` where that does not apply."""
        src = self.blobs[lay.bottoms[0]].layout
        if src.whole:
            return None
        if rule.follow is Follow.NONE or (
            rule.follow is Follow.CHANNELS and (src.axis != 1 or len(bottom_shape) != 4)
        ):
            return None
        allowed = {self.phys(d) for d in lay.devices}
        if not set(src.devices) <= allowed:
            return None
        halo = rule.halo
        shards = []
        for dev, lo, hi in src.parts:
            if halo != (0, 0):
                a, b = max(0, lo - halo[0]), min(src.size, hi + halo[1])
                inp = self.need(lay.bottoms[0], dev, a, b, True, (lo - a, b - hi))
            else:
                inp = self.need(lay.bottoms[0], dev, lo, hi)
            logical = tuple(d for d in lay.devices if self.phys(d) == dev)
            shards.append(Shard(dev, (lo, hi), (inp,), logical))
        tops = tuple(replace(src, size=_split_axis_size(t, src.axis)) for t in top_shapes)
        return LayerPlan(lay.name, lay.type, rule.split, tuple(shards), tops)

    def channels(self, lay: Layer, rule: Sharding, bottoms: tuple[Shape, ...],
                 tops: tuple[Shape, ...]) -> LayerPlan:
        """Divide the tops' ``rule.axis`` between the layer's devices."""
        k = len(lay.devices)
        n, group, axis = rule.outputs, rule.groups, rule.axis
        where = lay.field_spans.get(rule.outputs_field, lay.span)
        if n % k:
            raise PlacementError(
                f"{lay.type} '{lay.name}': {rule.outputs_field} {n} cannot be divided evenly "
                f"between its {k} devices {list(lay.devices)}", where,
                f"use a {rule.outputs_field} divisible by {k}, or place the layer on fewer "
                "devices (devices: [...])")
        if group > 1 and k > 1 and group % k:
            raise PlacementError(
                f"{lay.type} '{lay.name}': its {group} groups cannot be divided evenly between "
                f"its {k} devices {list(lay.devices)}",
                lay.field_spans.get(rule.groups_field, where),
                f"use a group that is a multiple of {k}, or place the layer on fewer devices")
        # Logical shards, then adjacent ones on one physical device merged.
        ranges = [(self.phys(d), d, lo, hi) for d, (lo, hi) in
                  zip(lay.devices, _even_ranges(n, k), strict=True)]
        merged: list[tuple[str, tuple[str, ...], int, int]] = []
        for dev, logical, lo, hi in ranges:
            if merged and merged[-1][0] == dev:
                m = merged[-1]
                merged[-1] = (dev, (*m[1], logical), m[2], hi)
            else:
                merged.append((dev, (logical,), lo, hi))
        shards = []
        for dev, logicals, lo, hi in merged:
            inputs = []
            for b, bshape in zip(lay.bottoms, bottoms, strict=True):
                if group > 1 and k > 1:
                    c = _split_axis_size(bshape, 1)
                    inputs.append(self.need(b, dev, lo * c // n, hi * c // n))
                else:
                    inputs.append(self.need_all(b, dev))
            shards.append(Shard(dev, (lo, hi), tuple(inputs), logicals))
        parts = tuple((dev, lo, hi) for dev, _, lo, hi in merged)
        layouts = tuple(Layout(axis, n, parts) for _ in tops)
        return LayerPlan(lay.name, lay.type, Split.CHANNELS, tuple(shards), layouts)

    def run(self) -> Plan:
        layers = []
        for i, lay in enumerate(self.net.layers):
            try:
                lp = self.layer(lay, i)
            except PlacementError as e:
                for note in lay.notes:
                    e.with_note(*note)
                raise
            for top, shape, layout in zip(lay.tops, self.shapes.layers[i].tops, lp.tops,
                                          strict=True):
                self.blobs[top] = _Blob(shape, layout, list(layout.parts))
            layers.append(lp)
        first = self.phys(self.net.devices[0])
        outputs = tuple(self.need_all(o, first) for o in self.net.outputs)
        devices = tuple(dict.fromkeys(self.phys(d) for d in self.net.devices))
        return Plan(self.net.name, devices, tuple(layers), outputs, self.map is None)


def plan(net: Net, shapes: ShapeTable, device_map: Mapping[str, str] | None = None) -> Plan:
    """Split every layer of ``net`` into per-device shards and derive the transfers.

    ``device_map`` (logical device -> physical device name) merges adjacent shards that
    land on one physical device; the plan is then in physical names. Without it the plan
    is in the spec's logical devices. Raises :class:`PlacementError` at the layer's span
    when a layer cannot be divided between its devices.
    """
    if device_map is not None:
        missing = [d for d in net.devices if d not in device_map]
        if missing:
            raise PlacementError(
                f"no physical device given for {', '.join(missing)}", None,
                "map every logical device, e.g. gpu:0=cuda:0")
    # Check divisibility against the logical devices first, whatever the mapping.
    if device_map is not None:
        _Planner(net, shapes, None).run()
    return _Planner(net, shapes, device_map).run()
