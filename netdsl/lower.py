"""Stage 10: ``Plan`` + device map -> :class:`CompiledNet`, a ``torch.nn.Module``.

Each shard of the plan becomes the module its layer type's ``lower()`` builds, with the
shard's params (a convolution shard computing 128 of 256 outputs with 1 of 2 groups is
``replace(params, num_output=128, group=1)``), placed on its device. The plan's inputs
become *assemble* steps: ``narrow`` the parts a shard reads, ``.to(device)`` the ones
held elsewhere, ``cat`` them. The forward pass is one flat list of such steps over a
list of tensors ("slots"), built once: no graph walking, no dict of blobs, per call.

Parameters (the design choice). Each shard owns its slice of every learnable blob as
its own ``nn.Parameter`` on its own device: true model parallelism, no parameter
traffic per step, and autograd sees ordinary leaves (slicing one full-size parameter
in forward would copy the slice across devices every step and make every shard's
backward write a full-size gradient). Caffe's view is restored at the edges:

* ``state_dict()`` has exactly the keys ``<layer>.<blob>`` with Caffe's full shapes
  (shard slices concatenated on the first shard's device), and ``load_state_dict``
  splits them back; a layer sharing a blob by ``ParamSpec.name`` lists it under its
  own key too, as pycaffe does.
* ``named_parameters()`` names a whole blob ``<layer>.<blob>`` and a shard's slice
  ``<layer>.<blob>[start:stop]`` (the range along the blob's divided axis).
* ``param_groups()`` gives optimizer groups by ``lr_mult``/``decay_mult``.

When shards land on one physical device the plan has already merged them (see
``placement.plan(device_map=...)``), so a 2-device AlexNet on one GPU or CPU runs conv2
as one ``groups=2`` convolution with one full-size parameter: exactly the module a
person would write. ``compile(fuse=False)`` keeps the logical shards apart (tests use
it to run the real sharded path, transfers included, on one CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import fillers, ops
from .diagnostics import DataError, PlacementError, SpecError
from .ir import Net, ParamSpec
from .layers.base import Filler, Shape, Split
from .placement import Input, LayerPlan, Plan, Shard
from .shapes import ShapeTable

__all__ = ["AUTOCAST_DTYPES", "CompiledNet", "lower"]

#: dtypes that mean "autocast to this", not "store the parameters in this".
AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)

Slots = list  # the forward pass's working list of tensors (one entry per slot)
Step = Callable[[list], None]


# --------------------------------------------------------------------------------------
# Small modules the lowering adds
# --------------------------------------------------------------------------------------


class LRNHalo(nn.Module):
    """LRN across channels of a channel slice given its halo (``ops.lrn_shard``)."""

    def __init__(self, local_size: int, alpha: float, beta: float, k: float,
                 below: int, above: int) -> None:
        super().__init__()
        self.local_size, self.alpha, self.beta, self.k = local_size, alpha, beta, k
        self.below, self.above = below, above

    def forward(self, x: Tensor) -> tuple[Tensor]:
        return (ops.lrn_shard(x, self.below, self.above, self.local_size, self.alpha,
                              self.beta, self.k),)

    def extra_repr(self) -> str:
        return (f"local_size={self.local_size}, alpha={self.alpha}, beta={self.beta}, "
                f"k={self.k}, halo=({self.below}, {self.above})")


class InPlaceReLU(nn.Module):
    """ReLU (or leaky ReLU) overwriting its input, for Caffe's in-place ReLU layers where
    that is safe (see ``_Lowerer.in_place``): no new activation per call."""

    def __init__(self, negative_slope: float = 0.0) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> tuple[Tensor]:
        if self.negative_slope == 0:
            return (torch.relu_(x),)
        return (torch.nn.functional.leaky_relu_(x, self.negative_slope),)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}, in_place=True"


#: Layer types whose output is a fresh tensor that their backward does not need, so a
#: ReLU may overwrite it (Sigmoid, TanH, ELU, ReLU itself keep their output for backward;
#: Split, Concat of one, Flatten and Reshape return their input or a view of it).
FRESH_OUTPUT = frozenset({
    "Convolution", "InnerProduct", "Deconvolution", "Pooling", "LRN", "BatchNorm", "Scale",
    "Bias", "Eltwise",
})


class Float32(nn.Module):
    """Runs a loss or metric in float32 outside autocast (a bf16 softmax loss is coarse)."""

    def __init__(self, inner: nn.Module, device_type: str) -> None:
        super().__init__()
        self.inner, self.device_type = inner, device_type

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        with torch.autocast(self.device_type, enabled=False):
            return self.inner(*(x.float() if x.is_floating_point() else x for x in xs))


# --------------------------------------------------------------------------------------
# Bookkeeping
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
        return getattr(self.module, self.attr)


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


@dataclass
class _StepInfo:
    """One step of the forward pass, as data (closures are built per CompiledNet, so a
    deep copy or an unpickled net runs its own modules).

    A module step calls ``module`` on slots ``reads`` and stores its tops in ``writes``
    (``fp32``: the device type to run it on in float32, outside autocast). An assemble
    step (``module is None``) concatenates ``pieces`` ``(slot, narrow, device)`` along
    ``axis`` into its one ``writes`` slot.
    """

    reads: tuple[int, ...]
    writes: tuple[int, ...]
    module: nn.Module | None = None
    fp32: str | None = None
    layer_type: str = ""
    in_place: bool = False  # the layer's top is its bottom (Caffe's in-place layer)
    axis: int = 1
    pieces: tuple[tuple[int, tuple[int, int] | None, torch.device | None], ...] = ()

    def build(self) -> Step:
        if self.module is not None:
            mod = self.module if self.fp32 is None else Float32(self.module, self.fp32)
            return _module_step(mod, self.reads, self.writes)
        fns = [_piece_fn(slot, self.axis, narrow, dev) for slot, narrow, dev in self.pieces]
        return _assemble_step(self.writes[0], self.axis, fns)


@dataclass
class _Program:
    """The steps one set of requested outputs needs, with its input feeds."""

    steps: tuple[Step, ...]
    feeds: tuple[tuple[str, int, Callable[[Any], Tensor]], ...]
    outputs: tuple[tuple[str, int], ...]
    required: frozenset[str]
    run: Callable[[list], None] | None = None


@dataclass
class _Segment:
    device: str
    start: int
    stop: int
    slot: int


@dataclass
class _Lowered:
    """Everything lowering builds (the CompiledNet's private state)."""

    modules: dict[str, nn.Module] = field(default_factory=dict)
    steps: list[_StepInfo] = field(default_factory=list)
    n_slots: int = 0
    inputs: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> slot, device
    segments: dict[str, list[_Segment]] = field(default_factory=dict)
    layouts: dict[str, list[_Segment]] = field(default_factory=dict)  # the parts only
    axis: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    blobs: list[BlobRef] = field(default_factory=list)

    def slot(self) -> int:
        self.n_slots += 1
        return self.n_slots - 1


# --------------------------------------------------------------------------------------
# Step builders: closures over slot indices, specialised by arity
# --------------------------------------------------------------------------------------


def _module_step(mod: nn.Module, ins: tuple[int, ...], outs: tuple[int, ...]) -> Step:
    if len(ins) == 1 and len(outs) == 1:
        (i,), (o,) = ins, outs

        def one(v: list) -> None:
            v[o] = mod(v[i])[0]
        return one
    if len(outs) == 1:
        (o,) = outs

        def many_one(v: list) -> None:
            v[o] = mod(*[v[i] for i in ins])[0]
        return many_one

    def general(v: list) -> None:
        res = mod(*[v[i] for i in ins])
        for o, t in zip(outs, res, strict=True):
            v[o] = t
    return general


def _piece_fn(slot: int, axis: int, narrow: tuple[int, int] | None,
              device: torch.device | None) -> Callable[[list], Tensor]:
    nb = device is not None and device.type != "cpu"  # a D2H copy must block
    if narrow is None and device is None:
        return lambda v: v[slot]
    if device is None:
        off, n = narrow  # type: ignore[misc]
        return lambda v: v[slot].narrow(axis, off, n)
    if narrow is None:
        return lambda v: v[slot].to(device, non_blocking=nb)
    off, n = narrow
    return lambda v: v[slot].narrow(axis, off, n).to(device, non_blocking=nb)


def _assemble_step(out: int, axis: int, pieces: list[Callable[[list], Tensor]]) -> Step:
    if len(pieces) == 1:
        (p,) = pieces

        def single(v: list) -> None:
            v[out] = p(v)
        return single

    def cat(v: list) -> None:
        v[out] = torch.cat([p(v) for p in pieces], axis)
    return cat


# --------------------------------------------------------------------------------------
# Lowering
# --------------------------------------------------------------------------------------


def _with_axis(shape: Shape, axis: int, size: int) -> Shape:
    if len(shape) <= axis:
        return shape
    return (*shape[:axis], size, *shape[axis + 1:])


def _shard_params(lay: Any, lp: LayerPlan, shard: Shard, n_devices: int) -> Any:
    """The layer params of what one shard computes (CHANNELS layers only)."""
    p = lay.params
    if shard.channels is None or lp.split is not Split.CHANNELS:
        return p
    lo, hi = shard.channels
    n = p.num_output
    changes: dict[str, int] = {"num_output": hi - lo}
    group = getattr(p, "group", 1)
    if group > 1 and n_devices > 1:
        changes["group"] = group * (hi - lo) // n
    return dataclasses.replace(p, **changes)


def _module_key(name: str, taken: set[str]) -> str:
    key = name.replace(".", "_") or "_"
    if hasattr(nn.ModuleDict, key) or key in taken:
        base, i = key, 1
        while f"{base}_{i}" in taken or hasattr(nn.ModuleDict, f"{base}_{i}"):
            i += 1
        key = f"{base}_{i}"
    taken.add(key)
    return key


class _Lowerer:
    def __init__(self, net: Net, shapes: ShapeTable, plan: Plan,
                 torch_devices: Mapping[str, torch.device], gen: torch.Generator,
                 autocast: bool) -> None:
        self.net, self.shapes, self.plan = net, shapes, plan
        self.dev = dict(torch_devices)  # plan device name -> torch device
        self.gen = gen
        self.autocast = autocast
        self.out = _Lowered()
        self.shared: dict[str, BlobRef] = {}  # ParamSpec.name -> owner's blob

    # --- inputs of a shard -------------------------------------------------------------

    def find(self, blob: str, device: str, start: int, stop: int) -> _Segment:
        for s in self.out.segments[blob]:
            if s.device == device and s.start <= start and stop <= s.stop:
                return s
        raise AssertionError(f"no segment of {blob} covers {start}:{stop} on {device}")

    def assemble(self, inp: Input, dst: str) -> int:
        """The slot holding what ``inp`` describes on ``dst``; adds steps if needed."""
        lo, hi = inp.channels
        pieces = []
        reads = []
        for pc in inp.pieces:
            seg = self.find(inp.bottom, pc.device, pc.start, pc.stop)
            narrow = None
            if (pc.start, pc.stop) != (seg.start, seg.stop):
                narrow = (pc.start - seg.start, pc.stop - pc.start)
            move = self.dev[dst] if pc.device != dst else None
            pieces.append((seg.slot, narrow, move))
            reads.append(seg.slot)
        if len(pieces) == 1 and pieces[0][1] is None and pieces[0][2] is None:
            return pieces[0][0]
        out = self.out.slot()
        self.out.steps.append(_StepInfo(tuple(reads), (out,), axis=inp.axis,
                                        pieces=tuple(pieces)))
        if inp.transfers:  # the planner keeps a moved copy for later readers: so do we
            self.out.segments[inp.bottom].append(_Segment(dst, lo, hi, out))
        return out

    # --- one layer ---------------------------------------------------------------------

    def shard_module(self, lay: Any, lp: LayerPlan, row: Any, shard: Shard) -> nn.Module:
        kind = lay.kind
        if lay.type == "LRN" and shard.inputs[0].halo != (0, 0):
            p = lay.params
            below, above = shard.inputs[0].halo
            return LRNHalo(p.local_size, p.alpha, p.beta, p.k, below, above)
        if len(lp.shards) == 1 and lp.split is not Split.CHANNELS:
            return kind.lower(lay.params, row.bottoms, row.tops)
        params = _shard_params(lay, lp, shard, len(lay.devices))
        bottoms = tuple(_with_axis(b, i.axis, i.channels[1] - i.channels[0])
                        for b, i in zip(row.bottoms, shard.inputs, strict=True))
        tops = row.tops
        if shard.channels is not None:
            lo, hi = shard.channels
            tops = tuple(_with_axis(t, lay_t.axis, hi - lo)
                         for t, lay_t in zip(row.tops, lp.tops, strict=True))
        return kind.lower(params, bottoms, tops)

    def layer(self, index: int, lay: Any, lp: LayerPlan) -> None:
        row = self.shapes.layers[index]
        out = self.out
        if lay.kind.is_data and lay.type != "DummyData":
            (shard,) = lp.shards
            for top, layout in zip(lay.tops, lp.tops, strict=True):
                slot = out.slot()
                out.inputs[top] = (slot, shard.device)
                out.segments[top] = [_Segment(shard.device, 0, layout.size, slot)]
                out.layouts[top] = list(out.segments[top])
                out.axis[top] = layout.axis
            return
        modules: list[nn.Module] = []
        top_slots: list[tuple[int, ...]] = []
        for shard in lp.shards:
            ins = tuple(self.assemble(i, shard.device) for i in shard.inputs)
            mod = self.shard_module(lay, lp, row, shard).to(self.dev[shard.device])
            fp32 = None
            if self.autocast and (lay.kind.is_loss or lay.type in ("Accuracy", "Softmax")):
                fp32 = self.dev[shard.device].type
            outs = tuple(out.slot() for _ in lay.tops)
            out.steps.append(_StepInfo(ins, outs, mod, fp32, lay.type, lay.in_place))
            modules.append(mod)
            top_slots.append(outs)
        for j, (top, layout) in enumerate(zip(lay.tops, lp.tops, strict=True)):
            out.segments[top] = [_Segment(dev, lo, hi, top_slots[k][j])
                                 for k, (dev, lo, hi) in enumerate(layout.parts)]
            out.layouts[top] = list(out.segments[top])
            out.axis[top] = layout.axis
        if modules:
            self.blobs(lay, row, modules)
            key = _module_key(lay.name, set(out.modules))
            out.modules[key] = modules[0] if len(modules) == 1 else nn.ModuleList(modules)

    # --- learnable blobs ---------------------------------------------------------------

    def blobs(self, lay: Any, row: Any, modules: list[nn.Module]) -> None:
        if not row.blobs:
            return
        fills = lay.kind.fillers(lay.params)
        for i, (blob, shape) in enumerate(row.blobs.items()):
            spec = lay.param_spec(i)
            tensors = [getattr(m, blob, None) for m in modules]
            if any(t is None for t in tensors):
                raise AssertionError(f"{lay.type} lowering has no blob '{blob}'")
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
    def split_axis(lay: Any, blob: str, full: Shape, shards: list[Shape]) -> int | None:
        if len(shards) == 1:
            if shards[0] != tuple(full):
                raise AssertionError(f"{lay.name}.{blob}: lowered {shards[0]} for {full}")
            return None
        diff = {a for s in shards for a, (x, y) in enumerate(zip(s, full, strict=True)) if x != y}
        if len(diff) != 1:
            raise AssertionError(
                f"{lay.name}.{blob}: shards {shards} do not divide {full} along one axis")
        return diff.pop()

    def fill(self, lay: Any, ref: BlobRef, filler: Filler) -> None:
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

    def share(self, lay: Any, ref: BlobRef, owner: BlobRef) -> None:
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

    def run(self) -> _Lowered:
        for i, (lay, lp) in enumerate(zip(self.net.layers, self.plan.layers, strict=True)):
            self.layer(i, lay, lp)
        first = self.plan.devices[0]
        for name, inp in zip(self.net.outputs, self.plan.outputs, strict=True):
            self.out.outputs[name] = self.assemble(inp, first)
        self.in_place()
        return self.out

    def in_place(self) -> None:
        """Run Caffe's in-place ReLUs in place where nothing can tell the difference.

        Safe when the layer is in-place in the spec (so the old value has no name any
        more), its input tensor is read by no other step, and was made by a layer type
        that returns a fresh tensor its backward does not need (``FRESH_OUTPUT``): then
        neither a later reader nor autograd sees the overwritten value.
        """
        steps = self.out.steps
        readers: dict[int, int] = {}
        producer: dict[int, _StepInfo] = {}
        for st in steps:
            for r in st.reads:
                readers[r] = readers.get(r, 0) + 1
            for w in st.writes:
                producer[w] = st
        swaps: dict[int, nn.Module] = {}
        for st in steps:
            if st.module is None or st.layer_type != "ReLU" or not st.in_place:
                continue
            (slot,) = st.reads
            prod = producer.get(slot)
            if (prod is None or prod.module is None or prod.layer_type not in FRESH_OUTPUT
                    or readers[slot] != 1):
                continue
            new = InPlaceReLU(st.module.negative_slope)
            swaps[id(st.module)] = new
            st.module = new
        for key, mod in list(self.out.modules.items()):
            if isinstance(mod, nn.ModuleList):
                for i, m in enumerate(mod):
                    if id(m) in swaps:
                        mod[i] = swaps[id(m)]
            elif id(mod) in swaps:
                self.out.modules[key] = swaps[id(mod)]


def _forget_shard_keys(module: CompiledNet, incompatible: Any) -> None:
    """After torch's recursive load: the shard modules' paths were never keys."""
    inner = module._load_prefix + "layers."
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                    if not k.startswith(inner)]


def _seed(net: Net, seed: int | None) -> int:
    """An explicit seed, else the spec's ``solver { random_seed }`` (Caffe's), else one
    drawn from torch's global generator (so ``torch.manual_seed`` makes it repeatable)."""
    if seed is not None:
        return int(seed)
    solver = net.sections.get("solver")
    if solver is not None:
        s = solver.scalar("random_seed")  # type: ignore[attr-defined]
        if isinstance(s, int) and s >= 0:
            return s
    return int(torch.randint(0, 2**62, (1,)).item())


def lower(net: Net, shapes: ShapeTable, plan: Plan, devices: Mapping[str, torch.device], *,
          seed: int | None = None, channels_last: bool = False, dtype: torch.dtype | None = None,
          torch_compile: bool = False) -> CompiledNet:
    """Build the :class:`CompiledNet` of a plan.

    ``devices`` maps the net's logical devices to torch devices. A plan made with a
    ``device_map`` is in physical names already (``torch.device(name)``). Blobs are
    filled from one CPU generator seeded with ``seed`` (see :func:`_seed`), in layer and
    blob order, so the values do not depend on the placement.
    """
    if plan.logical:
        missing = [d for d in plan.devices if d not in devices]
        if missing:
            raise PlacementError(f"no torch device given for {', '.join(missing)}")
        torch_devices = {d: torch.device(devices[d]) for d in plan.devices}
    else:
        torch_devices = {d: torch.device(d) for d in plan.devices}
    autocast = dtype in AUTOCAST_DTYPES
    gen = fillers.generator(_seed(net, seed))
    lowered = _Lowerer(net, shapes, plan, torch_devices, gen, autocast).run()
    return CompiledNet(net, shapes, plan, devices, torch_devices, lowered,
                       channels_last=channels_last, dtype=dtype, torch_compile=torch_compile)


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------


class CompiledNet(nn.Module):
    """A compiled net: ``net(data=x, label=y) -> {output blob: tensor}``.

    Input blobs are keyword arguments; ``outputs=[...]`` asks for other blobs instead of
    the net's outputs (pycaffe's ``forward(blobs=...)``), and only the layers those
    need run. Outputs held by several devices are gathered onto the first one.
    ``loss(out)`` is the objective: the loss-weighted sum of the loss tops.
    See the module docstring for how parameters are held.
    """

    def __init__(self, net: Net, shapes: ShapeTable, plan: Plan,
                 devices: Mapping[str, torch.device], torch_devices: Mapping[str, torch.device],
                 lowered: _Lowered, *, channels_last: bool = False,
                 dtype: torch.dtype | None = None, torch_compile: bool = False) -> None:
        super().__init__()
        self.net, self.shapes, self.plan = net, shapes, plan
        self.devices = {d: torch.device(devices[d]) for d in net.devices if d in devices}
        self._torch_devices = dict(torch_devices)
        self.layers = nn.ModuleDict(lowered.modules)
        self._lowered = lowered
        self._blobs = {b.key: b for b in lowered.blobs}
        self.inputs: tuple[str, ...] = net.inputs
        self.outputs: tuple[str, ...] = net.outputs
        self.channels_last = channels_last
        self.autocast_dtype = dtype if dtype in AUTOCAST_DTYPES else None
        self.storage_dtype = dtype if dtype is not None and dtype not in AUTOCAST_DTYPES else None
        self.torch_compile = torch_compile
        self._device_types = tuple(sorted({d.type for d in self._torch_devices.values()}))
        self._programs: dict[tuple[str, ...] | None, _Program] = {}
        self.loss_weights: dict[str, float] = {}
        for lay in net.layers:
            for j, top in enumerate(lay.tops):
                w = lay.loss_weights[j] if j < len(lay.loss_weights) else 0.0
                if w:
                    self.loss_weights[top] = float(w)
        if self.storage_dtype is not None:
            self.to(self.storage_dtype)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.train(net.phase.value == "train")
        self._load_prefix = ""
        self.register_load_state_dict_post_hook(_forget_shard_keys)

    def __getstate__(self) -> dict[str, Any]:
        """Pickling and deep copies leave out the compiled programs (closures over this
        net's modules); a copy builds its own on its first call."""
        state = self.__dict__.copy()
        state["_programs"] = {}
        return state

    # --- running -------------------------------------------------------------------------

    def forward(self, outputs: Sequence[str] | None = None, **inputs: Any) -> dict[str, Tensor]:
        key = None if outputs is None else tuple(outputs)
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._program(key)
        if inputs.keys() != prog.required:
            self._check_inputs(inputs, prog)
        v: list = [None] * self._lowered.n_slots
        for name, slot, convert in prog.feeds:
            v[slot] = convert(inputs[name])
        if prog.run is not None:
            prog.run(v)
        elif self.autocast_dtype is not None:
            with self._autocast():
                for step in prog.steps:
                    step(v)
        else:
            for step in prog.steps:
                step(v)
        return {name: v[slot] for name, slot in prog.outputs}

    def _autocast(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for t in self._device_types:
            stack.enter_context(torch.autocast(t, dtype=self.autocast_dtype))
        return stack

    def _check_inputs(self, inputs: Mapping[str, Any], prog: _Program) -> None:
        from .diagnostics import did_you_mean

        for name in inputs:
            if name not in self._lowered.inputs:
                raise DataError(
                    f"'{name}' is not an input of net '{self.net.name or self.net.path}'",
                    None, did_you_mean(name, self.inputs)
                    or f"its inputs are: {', '.join(self.inputs) or 'none'}")
        missing = sorted(prog.required - inputs.keys())
        if missing:
            wanted = ", ".join(n for n, _ in prog.outputs)
            raise DataError(
                f"missing input{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(needed to compute {wanted})", None,
                "pass the input blobs as keyword arguments, e.g. net(data=x, label=y)")

    def required_inputs(self, outputs: Sequence[str] | None = None) -> frozenset[str]:
        """The input blobs a forward asking for ``outputs`` (default: the net's) needs."""
        key = None if outputs is None else tuple(outputs)
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._program(key)
        return prog.required

    def loss(self, out: Mapping[str, Tensor]) -> Tensor:
        """The objective: sum of ``loss_weight * top`` (summed over its elements) for
        every top with a non-zero loss weight (Caffe's Net::ForwardBackward loss)."""
        if not self.loss_weights:
            raise DataError(f"net '{self.net.name}' has no loss (no top with a loss_weight)")
        total: Tensor | None = None
        for blob, w in self.loss_weights.items():
            if blob not in out:
                raise DataError(f"the loss needs blob '{blob}', which is not in the outputs",
                                None, "call the net without outputs=..., or include it")
            t = out[blob]
            term = (t if t.dim() == 0 else t.sum()) * w
            if total is None:
                total = term
            else:
                total = total + term.to(total.device)
        assert total is not None
        return total

    # --- programs (one per set of requested outputs) ----------------------------------

    def _output_slot(self, name: str) -> int:
        """The slot of a blob's final value, gathered onto the first device if needed."""
        low = self._lowered
        if name in low.outputs:
            return low.outputs[name]
        if name not in low.segments:
            from .diagnostics import did_you_mean

            known = list(low.segments)
            raise DataError(f"there is no blob '{name}' in net '{self.net.name}'", None,
                            did_you_mean(name, known))
        first = self.plan.devices[0]
        segs = low.segments[name]
        parts = low.layouts[name]
        size = parts[-1].stop
        whole = [s for s in segs if s.start == 0 and s.stop == size]
        whole.sort(key=lambda s: s.device != first)
        if whole and whole[0].device == first:
            return whole[0].slot
        pieces = []
        for s in whole[:1] or parts:  # a whole copy, else the parts that tile the blob
            dev = self._torch_devices[first] if s.device != first else None
            pieces.append((s.slot, dev))
        out = low.slot()
        low.steps.append(_StepInfo(tuple(s for s, _ in pieces), (out,), axis=low.axis[name],
                                   pieces=tuple((slot, None, dev) for slot, dev in pieces)))
        low.outputs[name] = out
        return out

    def _program(self, key: tuple[str, ...] | None) -> _Program:
        names = self.outputs if key is None else key
        outs = tuple((n, self._output_slot(n)) for n in names)
        needed = {slot for _, slot in outs}
        chosen: list[_StepInfo] = []
        for st in reversed(self._lowered.steps):
            if needed.intersection(st.writes):
                chosen.append(st)
                needed.update(st.reads)
        chosen.reverse()
        feeds = []
        for name, (slot, dev) in self._lowered.inputs.items():
            if slot in needed:
                feeds.append((name, slot, self._converter(self._torch_devices[dev])))
        prog = _Program(tuple(s.build() for s in chosen), tuple(feeds), outs,
                        frozenset(n for n, _, _ in feeds))
        if self.torch_compile:
            prog.run = torch.compile(self._runner(prog.steps), dynamic=False)
        return prog

    def _runner(self, steps: tuple[Step, ...]) -> Callable[[list], None]:
        autocast = self.autocast_dtype is not None
        device_types = self._device_types
        dtype = self.autocast_dtype

        def run(v: list) -> None:
            if autocast:
                with contextlib.ExitStack() as stack:
                    for t in device_types:
                        stack.enter_context(torch.autocast(t, dtype=dtype))
                    for step in steps:
                        step(v)
            else:
                for step in steps:
                    step(v)
        return run

    def _converter(self, device: torch.device) -> Callable[[Any], Tensor]:
        nb = device.type != "cpu"
        dtype = self.storage_dtype
        cl = self.channels_last

        def convert(x: Any) -> Tensor:
            if not isinstance(x, Tensor):
                x = torch.as_tensor(x)
            if x.device != device:
                x = x.to(device, non_blocking=nb)
            if dtype is not None and x.is_floating_point() and x.dtype != dtype:
                x = x.to(dtype)
            if cl and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        return convert

    # --- Caffe's view of the parameters -------------------------------------------------

    def blob_keys(self) -> tuple[str, ...]:
        """Every ``<layer>.<blob>`` key, in layer and Caffe blob order."""
        return tuple(self._blobs)

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Tensor]:  # type: ignore[override]
        """``<layer>.<blob>`` -> the blob with Caffe's full shape, whatever the placement.

        A blob divided between shards is concatenated (a copy, on the first shard's
        device); a whole one is the tensor itself (detached unless ``keep_vars``).
        """
        out = destination if destination is not None else {}
        for key, ref in self._blobs.items():
            if len(ref.parts) == 1 and keep_vars:
                out[prefix + key] = ref.parts[0].tensor
            else:
                out[prefix + key] = ref.full()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:  # type: ignore[override]
        """Load ``<layer>.<blob>`` tensors (Caffe's shapes; torch tensors or arrays),
        splitting each between the shards that hold it. ``assign`` is not supported."""
        from torch.nn.modules.module import _IncompatibleKeys

        from .diagnostics import did_you_mean

        missing = [k for k in self._blobs if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._blobs]
        if strict and (missing or unexpected):
            what = []
            if missing:
                what.append(f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
            if unexpected:
                what.append(f"unexpected {', '.join(unexpected[:8])}"
                            f"{' ...' if len(unexpected) > 8 else ''}")
            hint = did_you_mean(unexpected[0], self._blobs) if unexpected else None
            raise DataError(f"the weights do not fit net '{self.net.name}': {'; '.join(what)}",
                            None, hint)
        bad = []
        values: dict[str, Tensor] = {}
        for k, v in state_dict.items():
            if k not in self._blobs:
                continue
            t = v if isinstance(v, Tensor) else torch.as_tensor(v)
            if tuple(t.shape) != self._blobs[k].shape:
                bad.append(f"{k}: {list(t.shape)}, the net has {list(self._blobs[k].shape)}")
            values[k] = t
        if bad:
            raise DataError("weights of the wrong shape: " + "; ".join(bad))
        with torch.no_grad():
            for k, t in values.items():
                ref = self._blobs[k]
                for p in ref.parts:
                    src = t if ref.axis is None else t.narrow(ref.axis, p.start, p.stop - p.start)
                    p.tensor.copy_(src)
        return _IncompatibleKeys(missing, unexpected)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str,
                              local_metadata: Any, strict: bool, missing_keys: list[str],
                              unexpected_keys: list[str], error_msgs: list[str]) -> None:
        """Loading as a submodule of another module (torch's recursive load): our keys
        are ``prefix + <layer>.<blob>``; the shard modules' own paths are not keys."""
        self._load_prefix = prefix
        mine = {prefix + k for k in self._blobs}
        for k in self._blobs:
            if prefix + k not in state_dict:
                missing_keys.append(prefix + k)
        if strict:
            inner = prefix + "layers."
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix)
                                   and k not in mine and not k.startswith(inner))
        present = {k: state_dict[prefix + k] for k in self._blobs if prefix + k in state_dict}
        try:
            self.load_state_dict(present, strict=False)
        except DataError as e:
            error_msgs.append(e.message)

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Parameter]]:
        """``<layer>.<blob>`` for a whole blob, ``<layer>.<blob>[start:stop]`` for a
        shard's slice of one. A shared blob appears once, under its owner's name."""
        seen: set[int] = set()
        pre = prefix + "." if prefix else ""
        for key, ref in self._blobs.items():
            if not ref.learnable:
                continue
            for p in ref.parts:
                t = p.tensor
                if remove_duplicate and id(t) in seen:
                    continue
                seen.add(id(t))
                name = key if ref.axis is None else f"{key}[{p.start}:{p.stop}]"
                yield pre + name, t
        for name, t in super().named_parameters(prefix, recurse, remove_duplicate):
            if id(t) not in seen:  # anything a lowering holds outside its Caffe blobs
                seen.add(id(t))
                yield name, t

    def grad_dict(self) -> dict[str, Tensor | None]:
        """``<layer>.<blob>`` -> its gradient with Caffe's full shape (None: no gradient)."""
        out: dict[str, Tensor | None] = {}
        for key, ref in self._blobs.items():
            if not ref.learnable:
                continue
            grads = [p.tensor.grad for p in ref.parts]
            if any(g is None for g in grads):
                out[key] = None
            elif len(grads) == 1:
                out[key] = grads[0]
            else:
                dev = grads[0].device  # type: ignore[union-attr]
                out[key] = torch.cat([g.to(dev) for g in grads], ref.axis)  # type: ignore[union-attr]
        return out

    def param_groups(self, base_lr: float = 1.0, weight_decay: float = 0.0
                     ) -> list[dict[str, Any]]:
        """Optimizer parameter groups by Caffe's per-blob multipliers.

        One group per distinct ``(lr_mult, decay_mult)`` (Caffe default 1, 1), in first
        use order: ``{"params", "lr": base_lr * lr_mult, "weight_decay": weight_decay *
        decay_mult, "lr_mult", "decay_mult"}``. torch optimizers keep the extra keys, so
        a schedule can set ``group["lr"] = lr * group["lr_mult"]``. A shared blob takes
        its owner's multipliers.
        """
        groups: dict[tuple[float, float], dict[str, Any]] = {}
        seen: set[int] = set()
        for ref in self._blobs.values():
            if not ref.learnable:
                continue
            spec = self._blobs[ref.shared_from].spec if ref.shared_from else ref.spec
            gkey = (float(spec.lr_mult), float(spec.decay_mult))
            g = groups.setdefault(gkey, {"params": [], "lr": base_lr * gkey[0],
                                         "weight_decay": weight_decay * gkey[1],
                                         "lr_mult": gkey[0], "decay_mult": gkey[1]})
            for p in ref.parts:
                t = p.tensor
                if id(t) not in seen:
                    seen.add(id(t))
                    g["params"].append(t)
        return list(groups.values())

    def extra_repr(self) -> str:
        devs = ", ".join(f"{k}={v}" for k, v in self.devices.items())
        return f"net={self.net.name!r}, phase={self.net.phase.value}, devices=[{devs}]"

