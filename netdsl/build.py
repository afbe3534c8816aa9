"""Stage 7: a resolved :class:`syntax.Spec` and a phase -> :class:`ir.Net`.

Checks every layer's fields against its registered type, filters layers by phase as
Caffe's ``Net::FilterNet`` does, orders them (a .net file may list layers in any order;
in-place layers keep their position relative to the readers of the blob they overwrite),
and reports every graph error with the span of the offending field.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import syntax as s
from .diagnostics import (
    GraphError,
    NetdslError,
    PlacementError,
    Span,
    SpecError,
    did_you_mean,
    raise_all,
)
from .fields import convert, doc, field_spans
from .ir import Layer, Net, ParamSpec, Phase
from .layers import INPUT_TYPE, lookup
from .layers.base import Split
from .plugins import load_spec_plugins
from .sections import data_section, runtime_section, solver_section

#: Fields every layer may have, whatever its type (the rest belong to the type's Params).
COMMON_FIELDS = {
    "name": "the layer's name, unique in the net",
    "type": "the layer type (see the layer reference)",
    "bottom": "input blob(s); default: the previous layer's first top",
    "top": "output blob(s); default: the layer's name",
    "param": "per-blob { lr_mult decay_mult name } (name shares the blob)",
    "include": "keep the layer only in { phase level stage not_stage } (Caffe's rules)",
    "exclude": "drop the layer in { phase level stage not_stage } (Caffe's rules)",
    "phase": "shorthand for include { phase: ... }",
    "loss_weight": "weight of each top in the objective (loss layers: 1)",
    "propagate_down": "per bottom: whether to backpropagate into it",
    "devices": "logical devices the layer runs on (split across several)",
}

#: Top-level fields of a spec.
TOP_FIELDS = {
    "name": "the net's name",
    "devices": "logical devices, e.g. [\"gpu:0\", \"gpu:1\"]; default one device",
    "input": "an input blob: input { name: \"data\" shape: [3, 227, 227] }",
    "layer": "a layer { ... }",
    "data": "where examples come from and how they are transformed (netdsl train)",
    "solver": "how the net is trained (Caffe's solver fields)",
    "runtime": "how a run uses the hardware: precision, channels_last, compile",
    "force_backward": "Caffe: backpropagate to all layers (no effect)",
    "debug_info": "Caffe: print debug information (no effect)",
    "state": "the net state { phase level stage } that include/exclude rules test",
    "plugins": "modules registering more layer types: plugins: [\"mypkg.layers\"]",
}

DEFAULT_DEVICE = "gpu:0"


@dataclass(frozen=True)
class _Rule:
    phase: str | None = field(default=None, metadata=doc("TRAIN or TEST"))
    min_level: int | None = field(default=None, metadata=doc("minimum net level"))
    max_level: int | None = field(default=None, metadata=doc("maximum net level"))
    stage: tuple[str, ...] = field(default=(), metadata=doc("stages that must all be set"))
    not_stage: tuple[str, ...] = field(default=(), metadata=doc("stages that must not be set"))


def _meets(rule: _Rule, phase: Phase, level: int = 0, stages: Sequence[str] = ()) -> bool:
    """Caffe's Net::StateMeetsRule."""
    if rule.phase is not None and rule.phase.lower() != phase.value:
        return False
    if rule.min_level is not None and level < rule.min_level:
        return False
    if rule.max_level is not None and level > rule.max_level:
        return False
    if any(st not in stages for st in rule.stage):
        return False
    return not any(st in stages for st in rule.not_stage)


def _rule(f: s.Field) -> _Rule:
    if not isinstance(f.value, s.Block):
        raise SpecError(f"'{f.key}' must be a block {{ phase: TRAIN }}", f.value.span)
    rule = convert(_Rule, f.value.items, f"'{f.key}'")
    if rule.phase is not None and rule.phase.upper() not in ("TRAIN", "TEST"):
        raise SpecError(f"phase must be TRAIN or TEST, got {rule.phase}", f.value.span)
    return rule


@dataclass(frozen=True)
class NetState:
    """Caffe's NetState without the phase: the level and the stages that ``include`` and
    ``exclude`` rules test (``state { level: 1 stage: "deploy" }``, ``--level``,
    ``--stage``)."""

    level: int = 0
    stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class _State:
    phase: str | None = field(default=None, metadata=doc("TRAIN or TEST (--phase wins)"))
    level: int = field(default=0, metadata=doc("the net's level, for min_level/max_level"))
    stage: tuple[str, ...] = field(default=(), metadata=doc("the net's stages"))


def net_state(spec: s.Spec) -> NetState:
    """The spec's ``state { level stage }`` (Caffe's NetParameter.state), else the default."""
    fields = [f for f in spec.items if f.key == "state"]
    if not fields:
        return NetState()
    f = fields[-1]
    if not isinstance(f.value, s.Block):
        raise SpecError("'state' must be a block { level: 0 stage: \"deploy\" }", f.value.span)
    st = convert(_State, f.value.items, "'state'")
    return NetState(int(st.level), tuple(str(x) for x in st.stage))


def in_phase(layer: s.Block, phase: Phase, state: NetState | None = None) -> bool:
    """Caffe's Net::FilterNet for one layer, plus netdsl's `phase:` shorthand: kept if any
    include rule is met (none: kept), dropped if any exclude rule is met."""
    level, stages = (state.level, state.stages) if state is not None else (0, ())
    includes = [_rule(f) for f in layer.fields("include")]
    exclude_fields = layer.fields("exclude")
    excludes = [_rule(f) for f in exclude_fields]
    short = layer.first("phase")
    if short is not None:
        val = short.value
        if not (isinstance(val, s.Scalar) and str(val.value).upper() in ("TRAIN", "TEST")):
            raise SpecError("phase must be TRAIN or TEST", val.span)
        includes.append(_Rule(phase=str(val.value)))
    if includes and excludes:
        raise SpecError(
            "a layer can have include or exclude rules, not both", exclude_fields[0].span
        )
    if includes:
        return any(_meets(r, phase, level, stages) for r in includes)
    return not any(_meets(r, phase, level, stages) for r in excludes)


def _strings(f: s.Field, what: str) -> list[str]:
    vals = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
    out = []
    for v in vals:
        if not isinstance(v, s.Scalar) or v.kind not in ("string", "word"):
            raise SpecError(f"{what} must be a blob name (a string)", v.span)
        out.append(str(v.value))
    return out


def _string_list(block: s.Block, key: str, what: str) -> list[str]:
    out: list[str] = []
    for f in block.fields(key):
        out.extend(_strings(f, what))
    return out


def _floats(block: s.Block, key: str) -> tuple[float, ...]:
    out: list[float] = []
    for f in block.fields(key):
        vals = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
        for v in vals:
            if not isinstance(v, s.Scalar) or v.kind not in ("int", "float"):
                raise SpecError(f"'{key}' must be a number", v.span)
            out.append(float(v.value))
    return tuple(out)


@dataclass
class _Draft:
    """A layer being built: typed, before ordering and device assignment."""

    name: str
    type: str
    params: object
    bottoms: list[str]
    tops: list[str]
    devices: tuple[str, ...] | None
    param_specs: tuple[ParamSpec, ...]
    loss_weights: tuple[float, ...]
    span: Span
    spans: dict[str, Span]
    notes: tuple[s.Note, ...]
    index: int
    explicit_bottom: bool
    bottom_spans: tuple[Span, ...] = ()  # each written bottom's own span

    def bottom_span(self, i: int) -> Span:
        """Where bottom ``i`` is written (an implied bottom: the layer's bottoms, or it)."""
        if i < len(self.bottom_spans):
            return self.bottom_spans[i]
        return self.spans.get("bottom", self.span)


def input_block_layer(f: s.Field) -> s.Field:
    """netdsl's ``input { name: "data" shape: [3, 227, 227] }`` as an Input layer."""
    assert isinstance(f.value, s.Block)
    body = f.value
    name = body.first("name")
    if name is None:
        raise SpecError("input needs a name", body.span, 'input { name: "data" shape: [C, H, W] }')
    items: list[s.Item] = [
        s.Field("type", s.Scalar(INPUT_TYPE, "word", f.key_span), f.key_span, f.key_span),
        s.Field("top", name.value, name.span, name.key_span),
    ]
    for i in body.items:
        if isinstance(i, s.Field) and i.key not in ("top", "type"):
            items.append(i)
    return s.Field("layer", s.Block(tuple(items), body.span), f.span, f.key_span, f.notes)


def _devices(spec: s.Spec) -> tuple[str, ...]:
    fields = [f for f in spec.items if f.key == "devices"]
    if not fields:
        return (DEFAULT_DEVICE,)
    devs: list[str] = []
    for f in fields:
        devs.extend(_strings(f, "a device"))
    if not devs:
        raise PlacementError("devices is empty", fields[0].span, 'e.g. devices: ["gpu:0"]')
    if len(set(devs)) != len(devs):
        raise PlacementError("a device is listed twice", fields[0].span)
    return tuple(devs)


def build(spec: s.Spec, phase: Phase | str = Phase.TRAIN, level: int | None = None,
          stages: Sequence[str] | None = None) -> Net:
    """Type-check, phase-filter and order the layers of a resolved spec.

    ``level`` and ``stages`` are Caffe's NetState (``--level``, ``--stage``); each that is
    None comes from the spec's ``state {}`` (Caffe: level 0, no stages).
    """
    if isinstance(phase, str):
        phase = Phase.parse(phase)
    errors: list[NetdslError] = []
    for f in spec.items:
        if f.key not in TOP_FIELDS:
            hint = did_you_mean(f.key, TOP_FIELDS)
            errors.append(SpecError(f"unknown top-level field '{f.key}'", f.key_span, hint))
    raise_all(errors)
    written = net_state(spec)
    state = NetState(written.level if level is None else int(level),
                     written.stages if stages is None else tuple(stages))
    load_spec_plugins(spec.items)  # before any layer is typed
    net_devices = _devices(spec)
    name_f = next((f for f in spec.items if f.key == "name"), None)
    net_name = str(name_f.value.value) if name_f and isinstance(name_f.value, s.Scalar) else ""
    layer_fields = []
    for f in spec.items:
        if f.key == "input" and isinstance(f.value, s.Block):
            layer_fields.append(input_block_layer(f))
        elif f.key == "layer":
            if not isinstance(f.value, s.Block):
                errors.append(SpecError("'layer' must be a block { ... }", f.value.span))
                continue
            layer_fields.append(f)
    drafts: list[_Draft] = []
    elsewhere: dict[str, str] = {}  # blobs that only layers of the other phase make
    for f in layer_fields:
        try:
            body = f.value
            assert isinstance(body, s.Block)
            if not in_phase(body, phase, state):
                _other_phase_tops(body, phase, state, elsewhere)
                continue
            drafts.append(_draft(f, body, len(drafts), net_devices))
        except NetdslError as e:
            for note in f.notes:
                e.with_note(*note)
            errors.append(e)
    raise_all(errors)
    _check_names(drafts)
    _default_bottoms(drafts)
    ordered = _order(drafts, elsewhere)
    layers = _assign_devices(ordered, net_devices)
    inputs = tuple(t for lay in layers if lay.kind.is_input for t in lay.tops)
    outputs = _outputs(layers)
    sections = {f.key: f.value for f in spec.items
                if f.key in ("solver", "data", "runtime") and isinstance(f.value, s.Block)}
    solver = sections.get("solver")
    data = data_section(sections.get("data"), phase.value)
    return Net(net_name, phase, layers, net_devices, inputs, outputs, spec.path,
               _batch(layers), solver_section(solver),
               field_spans(solver.items) if solver is not None else {}, data,
               runtime_section(sections.get("runtime")), state.level, state.stages)


def _draft(f: s.Field, body: s.Block, index: int, net_devices: tuple[str, ...]) -> _Draft:
    spans = field_spans(body.items)
    name_f = body.first("name")
    type_f = body.first("type")
    if type_f is None:
        raise SpecError("layer needs a type", body.span, "e.g. type: Convolution")
    if not isinstance(type_f.value, s.Scalar) or type_f.value.kind not in ("string", "word"):
        raise SpecError("type must be a layer type name", type_f.value.span)
    kind = lookup(str(type_f.value.value), type_f.value.span)
    if name_f is None:
        raise SpecError(f"{kind.name} layer needs a name", body.span, 'add name: "..."')
    name = _strings(name_f, "name")[0]
    what = f"{kind.name} layer '{name}'"
    params = convert(
        kind.Params, body.items, what, ignore=COMMON_FIELDS, extra_names=COMMON_FIELDS
    )
    bottoms = _string_list(body, "bottom", "bottom")
    tops = _string_list(body, "top", "top")
    if not tops and (kind.tops.min >= 1):
        tops = [name]
    specs = tuple(
        convert(ParamSpec, b.items, f"param of '{name}'") for b in _param_blocks(body)
    )
    weights = _floats(body, "loss_weight")
    if not weights and kind.is_loss and tops:
        weights = (1.0,) + (0.0,) * (len(tops) - 1)
    devices = None
    dev_f = body.first("devices")
    if dev_f is not None:
        devices = tuple(_strings(dev_f, "a device"))
        for d in devices:
            if d not in net_devices:
                raise PlacementError(
                    f"layer '{name}' is placed on '{d}', which is not one of the net's devices "
                    f"{list(net_devices)}", dev_f.value.span,
                    did_you_mean(d, net_devices) or "add it to the top-level devices: [...]",
                )
    return _Draft(name, kind.name, params, bottoms, tops, devices, specs, weights, f.span,
                  spans, f.notes, index, bool(bottoms), _value_spans(body, "bottom"))


def _value_spans(block: s.Block, key: str) -> tuple[Span, ...]:
    """The span of each value of a repeated or list field (``bottom: ["a", "b"]``)."""
    out: list[Span] = []
    for f in block.fields(key):
        if isinstance(f.value, s.ListValue):
            out.extend(v.span for v in f.value.items)
        else:
            out.append(f.span)
    return tuple(out)


def _param_blocks(body: s.Block) -> list[s.Block]:
    """``param { ... }`` blocks, or a list of them (``param: $lr`` with a list variable)."""
    out: list[s.Block] = []
    for p in body.fields("param"):
        items = p.value.items if isinstance(p.value, s.ListValue) else (p.value,)
        for v in items:
            if not isinstance(v, s.Block):
                raise SpecError("'param' must be a block { lr_mult: 1 decay_mult: 1 }", v.span)
            out.append(v)
    return out


def _check_names(drafts: list[_Draft]) -> None:
    seen: dict[str, _Draft] = {}
    errors: list[NetdslError] = []
    for d in drafts:
        if d.name in seen:
            first = seen[d.name]
            errors.append(GraphError(
                f"duplicate layer name '{d.name}'", d.spans.get("name", d.span),
                _duplicate_hint(first, d),
                notes=[(f"first defined at {first.spans.get('name', first.span)}", None)],
            ))
        seen[d.name] = d
    raise_all(errors)


def _instance(d: _Draft) -> str | None:
    """The group instance a layer was expanded from (its innermost), from its notes."""
    for text, _ in d.notes:
        if text.startswith("expanded from instance '"):
            return text.split("'")[1]
    return None


def _duplicate_hint(first: _Draft, d: _Draft) -> str:
    a, b = _instance(first), _instance(d)
    if a is not None and b is not None and a != b:
        return (f"instances '{a}' and '{b}' both make '{d.name}': a name written with ${{...}} "
                "(or taken from an argument) inside a group is kept as written; put "
                "${name} in it (\"${name}_relu\") to make it unique per instance")
    return "layer names must be unique within a phase"


def _default_bottoms(drafts: list[_Draft]) -> None:
    """A layer that needs a bottom and names none reads the previous layer's first top;
    after a run of inputs (``input { data } input { label }``), the first input's."""
    prev: _Draft | None = None
    first_input: _Draft | None = None  # the first of the inputs just before
    for d in drafts:
        kind = lookup(d.type, d.span)
        src = first_input if first_input is not None else prev
        if not d.bottoms and kind.bottoms.min >= 1 and src is not None and src.tops:
            d.bottoms = [src.tops[0]]
        if kind.is_input:
            first_input = first_input or d
        else:
            first_input = None
        prev = d


def _other_phase_tops(body: s.Block, phase: Phase, state: NetState,
                      out: dict[str, str]) -> None:
    """Record the tops of a layer left out of ``phase`` that the other phase keeps (for
    the hint when a layer of this phase reads one: Caffe test nets read TEST-only data)."""
    other = Phase.TEST if phase is Phase.TRAIN else Phase.TRAIN
    try:
        if not in_phase(body, other, state):
            return
        tops = _string_list(body, "top", "top") or _string_list(body, "name", "name")[:1]
    except NetdslError:
        return  # reported, if at all, when that phase is built
    for top in tops:
        out.setdefault(top, other.name)


def _order(drafts: list[_Draft], elsewhere: dict[str, str] | None = None) -> list[_Draft]:
    """Stable topological order; missing bottoms and cycles are errors.

    A bottom binds to the latest writer of that blob earlier in the file; if none is
    earlier, to the first later writer (so layers may be listed out of order). A reader
    also runs before a later in-place layer that overwrites the blob it read.
    """
    writers: dict[str, list[int]] = {}
    inplace: dict[str, list[int]] = {}  # writers of a blob that also read it, by index
    for d in drafts:
        for t in d.tops:
            writers.setdefault(t, []).append(d.index)
            if t in d.bottoms:
                inplace.setdefault(t, []).append(d.index)
    deps: list[set[int]] = [set() for _ in drafts]
    errors: list[NetdslError] = []
    for d in drafts:
        kind = lookup(d.type, d.span)
        for i, b in enumerate(d.bottoms):
            wl = writers.get(b, [])
            pos = bisect.bisect_left(wl, d.index)  # sorted: bisect keeps long chains linear
            ws = wl[:1] if pos > 0 or not wl or wl[0] != d.index else wl[1:2]
            if not ws:
                where = d.bottom_span(i)
                other = (elsewhere or {}).get(b)
                hint = (f"only {other}-phase layers make '{b}': try --phase {other.lower()}"
                        if other else None) or did_you_mean(b, writers) or (
                    "no layer has this top" if writers else "the net has no layers with tops")
                err = GraphError(f"layer '{d.name}' reads '{b}', which no layer produces",
                                 where, hint)
                for note in d.notes:
                    err.with_note(*note)
                errors.append(err)
                continue
            deps[d.index].add(wl[pos - 1] if pos > 0 else ws[0])
            rewriters = inplace.get(b, [])
            later = bisect.bisect_right(rewriters, d.index)
            if pos > 0 and later < len(rewriters):
                deps[rewriters[later]].add(d.index)
        if not kind.bottoms.ok(len(d.bottoms)):
            errors.append(GraphError(
                f"{d.type} layer '{d.name}' takes {kind.bottoms} bottom(s), got {len(d.bottoms)}",
                d.spans.get("bottom", d.span)))
        if not kind.tops.ok(len(d.tops)):
            errors.append(GraphError(
                f"{d.type} layer '{d.name}' makes {kind.tops} top(s), got {len(d.tops)}",
                d.spans.get("top", d.span)))
    raise_all(errors)
    indeg = [len(x) for x in deps]
    users: list[list[int]] = [[] for _ in drafts]
    for i, ds in enumerate(deps):
        for j in ds:
            users[j].append(i)
    ready = [i for i, n in enumerate(indeg) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(drafts):
        raise _cycle_error(drafts, deps, set(order))
    return [drafts[i] for i in order]


def _cycle_error(drafts: list[_Draft], deps: list[set[int]], done: set[int]) -> GraphError:
    stuck = [i for i in range(len(drafts)) if i not in done]
    start = stuck[0]
    path, seen = [start], {start}
    cur = start
    while True:
        nxt = min(j for j in deps[cur] if j not in done)
        if nxt in seen:
            cycle = path[path.index(nxt):] + [nxt]
            break
        path.append(nxt)
        seen.add(nxt)
        cur = nxt
    names = " <- ".join(drafts[i].name for i in cycle)
    d = drafts[cycle[0]]
    return GraphError(f"the layers form a cycle: {names}", d.spans.get("bottom", d.span),
                      "a layer cannot read, directly or indirectly, its own output")


def _assign_devices(drafts: list[_Draft], net_devices: tuple[str, ...]) -> tuple[Layer, ...]:
    where: dict[str, tuple[str, ...]] = {}
    layers = []
    for d in drafts:
        kind = lookup(d.type, d.span)
        devs = d.devices
        if devs is None:
            if kind.split is Split.CHANNELS or kind.is_data or not d.bottoms:
                devs = net_devices
            elif kind.split is Split.REPLICATE:
                devs = net_devices[:1]
            else:
                union = {x for b in d.bottoms for x in where.get(b, net_devices)}
                devs = tuple(x for x in net_devices if x in union)
        for t in d.tops:
            where[t] = devs
        layers.append(Layer(d.name, d.type, d.params, tuple(d.bottoms), tuple(d.tops), devs,
                            d.param_specs, d.loss_weights, d.span, d.spans, d.notes))
    return tuple(layers)


def _outputs(layers: tuple[Layer, ...]) -> tuple[str, ...]:
    """Blobs whose last value no later layer reads (pycaffe's net.outputs)."""
    last_read: dict[str, int] = {}
    last_write: dict[str, int] = {}
    for i, lay in enumerate(layers):
        for b in lay.bottoms:
            last_read[b] = i
        for t in lay.tops:
            last_write[t] = i
    out = []
    for i, lay in enumerate(layers):
        for t in lay.tops:
            if last_write[t] == i and last_read.get(t, -1) <= i and t not in out:
                out.append(t)
    return tuple(out)


def _batch(layers: tuple[Layer, ...]) -> int:
    """The batch a data layer of the net gives (0: none)."""
    for lay in layers:
        if lay.kind.is_data:
            b = lay.kind.batch_size(lay.params)
            if b:
                return int(b)
    return 0
