"""Stage 10: ``Plan`` + torch devices -> a :class:`Program`, emitted as a ``torch.fx`` graph.

Each shard of the plan becomes the kernel its layer type's ``lower_shard()`` builds (a
module with the layer's blobs, or a stateless call), placed on its device. The plan's
inputs become explicit transfer nodes: ``narrow`` the parts a shard reads, ``.to(device)``
the ones held elsewhere, ``torch.cat`` them. The program is plain data (steps over value
ids); :func:`emit` turns the steps one set of outputs needs into an ``fx.Graph``, which
prints as Python (``CompiledNet.code``) and which ``torch.compile`` takes whole.

Parameters (the design choice). Each shard owns its slice of every learnable blob as
its own ``nn.Parameter`` on its own device: true model parallelism, no parameter
traffic per step, and autograd sees ordinary leaves. Caffe's view is restored at the
edges by :class:`netdsl.compiled.CompiledNet` (``state_dict()`` in Caffe's layout).
When shards land on one physical device the plan has already merged them (see
``placement.plan(device_map=...)``), so a 2-device AlexNet on one GPU or CPU runs conv2
as one ``groups=2`` convolution with one full-size parameter: exactly the module a
person would write.

Nothing here names a layer type: what a layer is (input, loss, metric...), how it
divides, its kernel and its in-place form are its type's answers.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, fx, nn

from . import fillers
from .diagnostics import PlacementError, SpecError
from .ir import Layer, Net, ParamSpec
from .layers.base import Alias, Call, Filler, Kernel, Role, Shape, Split
from .placement import Input, LayerPlan, Plan, Shard
from .shapes import ShapeTable

__all__ = ["AUTOCAST_DTYPES", "BlobPart", "BlobRef", "Program", "Step", "emit", "lower_program"]

#: dtypes that mean "autocast to this", not "store the parameters in this".
AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)

#: Roles whose layers run in float32 under autocast (a bf16 softmax loss is coarse).
FLOAT32_ROLES = (Role.LOSS, Role.METRIC, Role.PROBABILITIES)


class Float32(nn.Module):
    """Runs a kernel in float32 outside autocast (losses, metrics, probabilities)."""

    def __init__(self, inner: nn.Module | Call, device_type: str) -> None:
        super().__init__()
        self.inner, self.device_type = inner, device_type

    def forward(self, *xs: Tensor) -> Any:
        with torch.autocast(self.device_type, enabled=False):
            return self.inner(*(x.float() if x.is_floating_point() else x for x in xs))

    def extra_repr(self) -> str:
        return f"{getattr(self.inner, 'fn', self.inner)!r}, device_type={self.device_type!r}"


# --------------------------------------------------------------------------------------
# The program, as data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobPart:
    """One shard's slice ``[start, stop)`` (along the blob's ``axis``) of a Caffe blob."""

    module: nn.Module
    attr: str
    start: int
    stop: int

    @property
    def tensor(self) -> Tensor:
        t: Tensor = getattr(self.module, self.attr)
        return t


@dataclass
class BlobRef:
    """A Caffe blob ``<layer>.<blob>`` and the shard tensors that hold it."""

    key: str
    layer: str
    blob: str
    shape: Shape
    axis: int | None  # the axis divided between shards (None: one part)
    parts: list[BlobPart]
    learnable: bool
    spec: ParamSpec
    shared_from: str | None = None  # key of the blob this one shares (ParamSpec.name)

    def full(self) -> Tensor:
        ts = [p.tensor.detach() for p in self.parts]
        if len(ts) == 1:
            return ts[0]
        dev = ts[0].device
        return torch.cat([t.to(dev) for t in ts], self.axis if self.axis is not None else 0)


#: A piece of an assembled value: (value id, (offset, length) to narrow or None,
#: device to move to or None).
Piece = tuple[int, "tuple[int, int] | None", "torch.device | None"]


@dataclass
class Step:
    """One node (or, for an assembly, a few) of the program.

    A kernel step calls ``kernel`` (held at ``target`` under ``layers`` when it is a
    module) on values ``reads`` and defines ``writes``, one per top. An assembly step
    (``kernel is None``) concatenates ``pieces`` along ``axis`` into its one write.
    ``layer`` is the layer the step belongs to (a transfer belongs to its reader), and
    ``names`` name the values it writes in the printed code.
    """

    layer: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    names: tuple[str, ...]
    kernel: Kernel | None = None
    target: str | None = None
    fresh: bool = False  # writes a new tensor its backward does not need
    in_place: bool = False  # the layer's top is its bottom in the spec (Caffe in-place)
    axis: int = 1
    pieces: tuple[Piece, ...] = ()


@dataclass
class _Segment:
    device: str
    start: int
    stop: int
    value: int


@dataclass
class Program:
    """Everything lowering builds: the modules, the steps over value ids, where every
    blob's parts live, and the Caffe blobs."""

    modules: dict[str, nn.Module] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    n_values: int = 0
    inputs: dict[str, tuple[int, str]] = field(default_factory=dict)  # blob -> value, device
    segments: dict[str, list[_Segment]] = field(default_factory=dict)
    layouts: dict[str, list[_Segment]] = field(default_factory=dict)  # the parts only
    axis: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    blobs: list[BlobRef] = field(default_factory=list)

    def value(self) -> int:
        self.n_values += 1
        return self.n_values - 1

    def output_value(self, name: str, first: str, device: torch.device) -> int | None:
        """The value holding blob ``name`` whole on device ``first`` (adding the gather
        step if needed); ``None`` if there is no such blob."""
        if name in self.outputs:
            return self.outputs[name]
        if name not in self.segments:
            return None
        segs, parts = self.segments[name], self.layouts[name]
        size = parts[-1].stop
        whole = sorted((s for s in segs if s.start == 0 and s.stop == size),
                       key=lambda s: s.device != first)
        if whole and whole[0].device == first:
            return whole[0].value
        pieces = tuple((s.value, None, device if s.device != first else None)
                       for s in whole[:1] or parts)
        out = self.value()
        self.steps.append(Step("", tuple(p[0] for p in pieces), (out,), (name,),
                               axis=self.axis[name], pieces=pieces))
        self.outputs[name] = out
        return out


# --------------------------------------------------------------------------------------
# Plan -> Program
# --------------------------------------------------------------------------------------


def _with_axis(shape: Shape, axis: int, size: int) -> Shape:
    if len(shape) <= axis:
        return shape
    return (*shape[:axis], size, *shape[axis + 1:])


def _module_key(name: str, taken: Mapping[str, Any]) -> str:
    """A Python identifier for a layer's modules (``inception_3a/1x1`` ->
    ``inception_3a_1x1``), unique among ``taken``."""
    key = re.sub(r"\W", "_", name) or "_"
    if key[0].isdigit():
        key = "_" + key
    base, i = key, 1
    while key in taken or hasattr(nn.ModuleDict, key):
        key, i = f"{base}_{i}", i + 1
    return key


def _ident(text: str) -> str:
    return re.sub(r"\W", "_", text)


class _Lowerer:
    def __init__(self, net: Net, shapes: ShapeTable, plan: Plan,
                 torch_devices: Mapping[str, torch.device], gen: torch.Generator,
                 autocast: bool) -> None:
        self.net, self.shapes, self.plan = net, shapes, plan
        self.dev = dict(torch_devices)  # plan device name -> torch device
        self.gen = gen
        self.autocast = autocast
        self.out = Program()
        self.shared: dict[str, BlobRef] = {}  # ParamSpec.name -> owner's blob

    # --- inputs of a shard -------------------------------------------------------------

    def find(self, blob: str, device: str, start: int, stop: int) -> _Segment:
        for s in self.out.segments[blob]:
            if s.device == device and s.start <= start and stop <= s.stop:
                return s
        raise AssertionError(f"no segment of {blob} covers {start}:{stop} on {device}")

    def assemble(self, inp: Input, dst: str, layer: str) -> int:
        """The value holding what ``inp`` describes on ``dst``; adds a step if needed."""
        lo, hi = inp.channels
        pieces: list[Piece] = []
        for pc in inp.pieces:
            seg = self.find(inp.bottom, pc.device, pc.start, pc.stop)
            narrow = None
            if (pc.start, pc.stop) != (seg.start, seg.stop):
                narrow = (pc.start - seg.start, pc.stop - pc.start)
            move = self.dev[dst] if pc.device != dst else None
            pieces.append((seg.value, narrow, move))
        if len(pieces) == 1 and pieces[0][1] is None and pieces[0][2] is None:
            return pieces[0][0]
        out = self.out.value()
        name = f"{inp.bottom}_{lo}_{hi}" if inp.transfers == () else f"{inp.bottom}_to_{dst}"
        self.out.steps.append(Step(layer, tuple(p[0] for p in pieces), (out,), (name,),
                                   axis=inp.axis, pieces=tuple(pieces)))
        if inp.transfers:  # the planner keeps a moved copy for later readers: so do we
            self.out.segments[inp.bottom].append(_Segment(dst, lo, hi, out))
        return out

    # --- one layer ---------------------------------------------------------------------

    def shard_kernel(self, lay: Layer, lp: LayerPlan, row: Any, shard: Shard) -> Kernel:
        kind = lay.kind
        if len(lp.shards) == 1 and shard.channels is None:
            return kind.lower(lay.params, row.bottoms, row.tops)
        bottoms = tuple(_with_axis(b, i.axis, i.channels[1] - i.channels[0])
                        for b, i in zip(row.bottoms, shard.inputs, strict=True))
        tops, outputs = row.tops, None
        if shard.channels is not None:
            lo, hi = shard.channels
            tops = tuple(_with_axis(t, lay_t.axis, hi - lo)
                         for t, lay_t in zip(row.tops, lp.tops, strict=True))
            if lp.split is Split.CHANNELS:
                outputs = shard.channels
        halo = shard.inputs[0].halo if shard.inputs else (0, 0)
        return kind.lower_shard(lay.params, bottoms, tops, outputs, halo)

    def layer(self, index: int, lay: Layer, lp: LayerPlan) -> None:
        row = self.shapes.layers[index]
        out = self.out
        if lay.kind.is_input:
            (shard,) = lp.shards
            for top, layout in zip(lay.tops, lp.tops, strict=True):
                v = out.value()
                out.inputs[top] = (v, shard.device)
                self.define(top, layout.axis, [_Segment(shard.device, 0, layout.size, v)])
            return
        modules: list[nn.Module] = []
        held: list[nn.Module] = []
        top_values: list[tuple[int, ...]] = []
        key = _module_key(lay.name, out.modules)
        for k, shard in enumerate(lp.shards):
            ins = tuple(self.assemble(i, shard.device, lay.name) for i in shard.inputs)
            kernel = self.shard_kernel(lay, lp, row, shard)
            if isinstance(kernel, Alias):
                top_values.append((ins[0],) * len(lay.tops))
                continue
            if isinstance(kernel, nn.Module):
                kernel = kernel.to(self.dev[shard.device])
                modules.append(kernel)
            if self.autocast and lay.kind.role in FLOAT32_ROLES:
                kernel = Float32(kernel, self.dev[shard.device].type)
            target = None
            if isinstance(kernel, nn.Module):
                target = f"{key}.{k}" if len(lp.shards) > 1 else key
                held.append(kernel)
            writes = tuple(out.value() for _ in lay.tops)
            suffix = f"_{k}" if len(lp.shards) > 1 else ""
            names = ((lay.name + suffix,) if len(lay.tops) == 1
                     else tuple(t + suffix for t in lay.tops))
            out.steps.append(Step(lay.name, ins, writes, names, kernel, target,
                                  lay.kind.fresh_output, lay.in_place))
            top_values.append(writes)
        for j, (top, layout) in enumerate(zip(lay.tops, lp.tops, strict=True)):
            self.define(top, layout.axis, [_Segment(dev, lo, hi, top_values[k][j])
                                           for k, (dev, lo, hi) in enumerate(layout.parts)])
        if modules:
            self.blobs(lay, row, modules)
        if held:
            out.modules[key] = held[0] if len(lp.shards) == 1 else nn.ModuleList(held)

    def define(self, blob: str, axis: int, segments: list[_Segment]) -> None:
        self.out.segments[blob] = segments
        self.out.layouts[blob] = list(segments)
        self.out.axis[blob] = axis

    # --- learnable blobs ---------------------------------------------------------------

    def blobs(self, lay: Layer, row: Any, modules: list[nn.Module]) -> None:
        if not row.blobs:
            return
        fills = lay.kind.fillers(lay.params)
        for i, (blob, shape) in enumerate(row.blobs.items()):
            spec = lay.param_spec(i)
            tensors: list[Tensor] = []
            for m in modules:
                t = getattr(m, blob, None)
                if t is None:
                    raise AssertionError(f"{lay.type} lowering has no blob '{blob}'")
                tensors.append(t)
            axis = self.split_axis(lay, blob, shape, [tuple(t.shape) for t in tensors])
            parts, start = [], 0
            for m, t in zip(modules, tensors, strict=True):
                n = t.shape[axis] if axis is not None else 0
                parts.append(BlobPart(m, blob, start, start + n if axis is not None else 0))
                start += n
            ref = BlobRef(f"{lay.name}.{blob}", lay.name, blob, tuple(shape), axis, parts,
                          isinstance(tensors[0], nn.Parameter), spec)
            owner = self.shared.get(spec.name) if spec.name else None
            if owner is not None:
                self.share(lay, ref, owner)
            else:
                if spec.name:
                    self.shared[spec.name] = ref
                self.fill(lay, ref, fills.get(blob, Filler()))
            if ref.learnable and spec.lr_mult == 0 and owner is None:
                for p in ref.parts:
                    p.tensor.requires_grad_(False)
            self.out.blobs.append(ref)

    @staticmethod
    def split_axis(lay: Layer, blob: str, full: Shape, shards: list[Shape]) -> int | None:
        if len(shards) == 1:
            if shards[0] != tuple(full):
                raise AssertionError(f"{lay.name}.{blob}: lowered {shards[0]} for {full}")
            return None
        diff = {a for s in shards for a, (x, y) in enumerate(zip(s, full, strict=True)) if x != y}
        if len(diff) != 1:
            raise AssertionError(
                f"{lay.name}.{blob}: shards {shards} do not divide {full} along one axis")
        return diff.pop()

    def fill(self, lay: Layer, ref: BlobRef, filler: Filler) -> None:
        try:
            if len(ref.parts) == 1:  # straight into the tensor (no copy if CPU float32)
                fillers.fill_(ref.parts[0].tensor, filler, self.gen)
                return
            (values,) = fillers.fill_blobs([(ref.shape, filler)], self.gen)
        except fillers.FillerError as e:
            where = lay.field_spans.get(f"{'bias' if ref.blob == 'bias' else 'weight'}_filler",
                                        lay.span)
            raise SpecError(f"{lay.type} '{lay.name}': {ref.blob}: {e}", where) from None
        with torch.no_grad():
            for p in ref.parts:
                src = values if ref.axis is None else values.narrow(ref.axis, p.start,
                                                                    p.stop - p.start)
                p.tensor.copy_(src)

    def share(self, lay: Layer, ref: BlobRef, owner: BlobRef) -> None:
        """Make ``ref``'s shards use the owner's tensors (Caffe's ParamSpec.name)."""
        mine = [tuple(p.tensor.shape) for p in ref.parts]
        theirs = [tuple(p.tensor.shape) for p in owner.parts]
        devs = [p.tensor.device for p in ref.parts] == [p.tensor.device for p in owner.parts]
        if mine != theirs or not devs:
            raise PlacementError(
                f"{lay.type} '{lay.name}' shares '{ref.spec.name}' with '{owner.layer}', but "
                f"its {ref.blob} is held as {mine} and theirs as {theirs}",
                lay.field_spans.get("param", lay.span),
                "layers that share a blob need the same shape and the same devices")
        for p, o in zip(ref.parts, owner.parts, strict=True):
            setattr(p.module, p.attr, o.tensor)
        ref.shared_from = owner.key

    # --- whole net -------------------------------------------------------------------

    def run(self) -> Program:
        for i, (lay, lp) in enumerate(zip(self.net.layers, self.plan.layers, strict=True)):
            self.layer(i, lay, lp)
        first = self.plan.devices[0]
        for name, inp in zip(self.net.outputs, self.plan.outputs, strict=True):
            self.out.outputs[name] = self.assemble(inp, first, "")
        self.in_place()
        return self.out

    def in_place(self) -> None:
        """Run Caffe's in-place layers in place where nothing can tell the difference.

        Safe when the layer is in-place in the spec (so the old value has no name any
        more), its type has an in-place kernel, its input is read by no other step, and
        was made by a kernel that returns a fresh tensor its backward does not need:
        then neither a later reader nor autograd sees the overwritten value.
        """
        steps = self.out.steps
        readers: dict[int, int] = {}
        producer: dict[int, Step] = {}
        for st in steps:
            for r in st.reads:
                readers[r] = readers.get(r, 0) + 1
            for w in st.writes:
                producer[w] = st
        by_name = {lay.name: lay for lay in self.net.layers}
        for st in steps:
            if st.kernel is None or not st.in_place or len(st.reads) != 1:
                continue
            prod = producer.get(st.reads[0])
            if prod is None or not prod.fresh or readers[st.reads[0]] != 1:
                continue
            lay = by_name[st.layer]
            kernel = lay.kind.lower_in_place(lay.params)
            if kernel is not None and not isinstance(st.kernel, nn.Module):
                st.kernel = kernel


def lower_program(net: Net, shapes: ShapeTable, plan: Plan,
                  torch_devices: Mapping[str, torch.device], gen: torch.Generator,
                  autocast: bool) -> Program:
    """The :class:`Program` of a plan: modules on their devices, filled from ``gen`` in
    layer and blob order (so the values do not depend on the placement)."""
    return _Lowerer(net, shapes, plan, torch_devices, gen, autocast).run()


# --------------------------------------------------------------------------------------
# Program -> fx.Graph
# --------------------------------------------------------------------------------------


def emit(program: Program, outputs: Sequence[tuple[str, int]], feeds: Sequence[str]
         ) -> fx.Graph:
    """The fx graph computing ``outputs`` (blob name, value) from the inputs ``feeds``.

    Only the steps those outputs need are emitted; every node's ``meta["layer"]`` is the
    layer it belongs to. Placeholders and outputs are named by blob.
    """
    needed = {v for _, v in outputs}
    chosen: list[Step] = []
    for st in reversed(program.steps):
        if needed.intersection(st.writes):
            chosen.append(st)
            needed.update(st.reads)
    chosen.reverse()
    g = fx.Graph()
    env: dict[int, fx.Node] = {}
    for name in feeds:
        value = program.inputs[name][0]
        if value in needed:
            env[value] = g.placeholder(_ident(name))
            env[value].meta["blob"] = name
    for st in chosen:
        if st.kernel is None:
            node = _emit_assembly(g, st, env)
        else:
            args = tuple(env[r] for r in st.reads)
            if st.target is not None:
                node = g.create_node("call_module", f"layers.{st.target}", args,
                                     name=_ident(st.names[0] if len(st.writes) == 1
                                                 else st.layer))
            else:
                assert isinstance(st.kernel, Call)
                node = g.create_node("call_function", st.kernel.fn, args,
                                     _non_default(st.kernel),
                                     name=_ident(st.names[0] if len(st.writes) == 1
                                                 else st.layer))
            node.meta["layer"] = st.layer
            if len(st.writes) != 1:
                for i, (w, name) in enumerate(zip(st.writes, st.names, strict=True)):
                    env[w] = g.create_node("call_function", operator.getitem, (node, i),
                                           name=_ident(name))
                    env[w].meta["layer"] = st.layer
                continue
        env[st.writes[0]] = node
    g.output(tuple(env[v] for _, v in outputs))
    return g


def _non_default(call: Call) -> dict[str, Any]:
    """The call's keyword arguments, less the switches left off (a default of None,
    False, 0 or empty that the call keeps), so the printed code says what matters."""
    try:
        params = inspect.signature(call.fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return dict(call.kwargs)

    def off(k: str, v: Any) -> bool:
        d = params[k].default if k in params else inspect.Parameter.empty
        return d is not inspect.Parameter.empty and not d and type(d) is type(v) and d == v

    return {k: v for k, v in call.kwargs.items() if not off(k, v)}


def _emit_assembly(g: fx.Graph, st: Step, env: dict[int, fx.Node]) -> fx.Node:
    """``narrow`` / ``.to(device)`` each piece, then ``torch.cat`` them; the node that
    makes the assembled value is named after it."""
    name = _ident(st.names[0])
    ops: list[list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]]] = []
    for _, narrow, device in st.pieces:
        chain: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = []
        if narrow is not None:
            chain.append(("call_method", "narrow", (st.axis, narrow[0], narrow[1]), {}))
        if device is not None:  # a copy to the CPU must block: the host reads it next
            chain.append(("call_method", "to", (str(device),),
                          {"non_blocking": device.type != "cpu"}))
        ops.append(chain)
    single = len(st.pieces) == 1
    parts = []
    for k, ((value, _, _), chain) in enumerate(zip(st.pieces, ops, strict=True)):
        node = env[value]
        for i, (op, target, args, kwargs) in enumerate(chain):
            last = i == len(chain) - 1
            node = g.create_node(op, target, (node, *args), kwargs,
                                 name=(name if single else f"{name}_part{k}") if last else None)
            node.meta["layer"] = st.layer
        parts.append(node)
    if single:
        return parts[0]
    node = g.create_node("call_function", torch.cat, (parts, st.axis), name=name)
    node.meta["layer"] = st.layer
    return node
