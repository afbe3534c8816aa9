"""The compiled net: a ``torch.nn.Module`` around the lowered program's fx graphs.

``net(data=x, label=y)`` runs the ``torch.fx.GraphModule`` that computes the net's
outputs; ``outputs=[...]`` asks for other blobs (pycaffe's ``forward(blobs=...)``), and
gets a graph of its own with only the layers those need. ``net.code`` prints the graph
as Python. With ``torch_compile`` each graph goes to ``torch.compile`` whole.

Caffe's view of the parameters is kept at the edges, whatever the placement:

* ``state_dict()`` has exactly the keys ``<layer>.<blob>`` with Caffe's full shapes
  (shard slices concatenated on the first shard's device), and ``load_state_dict``
  splits them back; a layer sharing a blob by ``ParamSpec.name`` lists it under its
  own key too, as pycaffe does.
* ``named_parameters()`` names a whole blob ``<layer>.<blob>`` and a shard's slice
  ``<layer>.<blob>[start:stop]`` (the range along the blob's divided axis).
* ``param_groups()`` gives optimizer groups by ``lr_mult``/``decay_mult``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, fx, nn

from .diagnostics import DataError, did_you_mean
from .ir import Net
from .kernels.normalization import BatchStatistics, Reduce
from .lower import AUTOCAST_DTYPES, BlobRef, Program, emit
from .placement import Plan
from .shapes import ShapeTable

__all__ = ["CompiledNet", "LayerHook"]

#: ``before(layer, inputs)`` / ``after(layer, outputs)`` for :meth:`CompiledNet.run_layers`.
LayerHook = Callable[[str, Sequence[Tensor]], None]


@dataclass
class _Graph:
    """One set of requested outputs: its GraphModule and how to call it."""

    module: fx.GraphModule
    feeds: tuple[tuple[str, Callable[[Any], Tensor]], ...]  # input blob, converter
    outputs: tuple[str, ...]
    required: frozenset[str]
    run: Callable[..., tuple[Tensor, ...]]


class CompiledNet(nn.Module):
    """A compiled net: ``net(data=x, label=y) -> {output blob: tensor}``.

    Input blobs are keyword arguments; ``outputs=[...]`` asks for other blobs instead of
    the net's outputs, and only the layers those need run. Outputs held by several
    devices are gathered onto the first one. ``loss(out)`` is the objective: the
    loss-weighted sum of the loss tops. See the module docstring for the parameters.
    """

    def __init__(self, net: Net, shapes: ShapeTable, plan: Plan,
                 devices: Mapping[str, torch.device], torch_devices: Mapping[str, torch.device],
                 program: Program, *, channels_last: bool = False,
                 dtype: torch.dtype | None = None,
                 torch_compile: bool | Mapping[str, Any] = False) -> None:
        super().__init__()
        self.net, self.shapes, self.plan = net, shapes, plan
        self.devices = {d: torch.device(devices[d]) for d in net.devices if d in devices}
        self._torch_devices = dict(torch_devices)
        self.layers = nn.ModuleDict(program.modules)
        self._program = program
        self._blobs = {b.key: b for b in program.blobs}
        self.inputs: tuple[str, ...] = tuple(program.inputs)
        self.outputs: tuple[str, ...] = net.outputs
        self.channels_last = channels_last
        self.autocast_dtype = dtype if dtype in AUTOCAST_DTYPES else None
        self.storage_dtype = dtype if dtype is not None and dtype not in AUTOCAST_DTYPES else None
        self.torch_compile = torch_compile
        self._device_types = tuple(sorted({d.type for d in self._torch_devices.values()}))
        self._graphs: dict[tuple[str, ...] | None, _Graph] = {}
        self.loss_weights: dict[str, float] = {}
        for lay in net.layers:
            for j, top in enumerate(lay.tops):
                w = lay.loss_weights[j] if j < len(lay.loss_weights) else 0.0
                if w:
                    self.loss_weights[top] = float(w)
        if self.storage_dtype is not None:
            self.to(self.storage_dtype)
        if channels_last:
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to's overloads omit memory_format
        self.train(net.phase.value == "train")
        self._load_prefix = ""
        self.register_load_state_dict_post_hook(_forget_shard_keys)  # type: ignore[no-untyped-call]  # unannotated in torch

    def __getstate__(self) -> dict[str, Any]:
        """Pickling and deep copies leave out the graphs (and their compiled forms); a
        copy builds its own, over its own modules, on its first call."""
        state = self.__dict__.copy()
        state["_graphs"] = {}
        return state

    # --- the program -------------------------------------------------------------------

    def graph_module(self, outputs: Sequence[str] | None = None) -> fx.GraphModule:
        """The ``torch.fx.GraphModule`` computing ``outputs`` (default: the net's): its
        inputs are the input blobs it needs, in the net's order; it returns a tuple."""
        return self._graph(outputs).module

    @property
    def code(self) -> str:
        """The net's program as Python, as ``torch.fx`` prints it: one line per kernel
        call, and the transfers between devices as ``.to(...)``, ``narrow``, ``cat``."""
        return self.graph_module().code.strip() + "\n"

    def input_device(self, name: str) -> torch.device:
        """The device input blob ``name`` is fed on (where a loader should deliver it)."""
        if name not in self._program.inputs:
            raise DataError(f"'{name}' is not an input of net '{self.net.name}'", None,
                            did_you_mean(name, self.inputs))
        return self._torch_devices[self._program.inputs[name][1]]

    def _graph(self, outputs: Sequence[str] | None) -> _Graph:
        key = None if outputs is None else tuple(outputs)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._build(key)
        return graph

    def _build(self, key: tuple[str, ...] | None) -> _Graph:
        names = self.outputs if key is None else key
        first = self.plan.devices[0]
        outs = []
        for name in names:
            value = self._program.output_value(name, first, self._torch_devices[first])
            if value is None:
                raise DataError(f"there is no blob '{name}' in net '{self.net.name}'", None,
                                did_you_mean(name, list(self._program.segments)))
            outs.append((name, value))
        g = emit(self._program, outs, self.inputs)
        module = fx.GraphModule(self, g, class_name=type(self).__name__ + "Graph")
        fed = tuple(n.meta["blob"] for n in g.nodes if n.op == "placeholder")
        feeds = tuple((n, self._converter(self._torch_devices[self._program.inputs[n][1]]))
                      for n in fed)
        return _Graph(module, feeds, tuple(names), frozenset(fed), self._runner(module))

    def _runner(self, module: fx.GraphModule) -> Callable[..., tuple[Tensor, ...]]:
        run: Callable[..., tuple[Tensor, ...]] = module
        if self.autocast_dtype is not None:
            device_types, dtype = self._device_types, self.autocast_dtype

            def autocast(*xs: Tensor) -> tuple[Tensor, ...]:
                with contextlib.ExitStack() as stack:
                    for t in device_types:
                        stack.enter_context(torch.autocast(t, dtype=dtype))
                    out: tuple[Tensor, ...] = module(*xs)
                return out
            run = autocast
        if self.torch_compile:
            options = {} if self.torch_compile is True else dict(self.torch_compile)
            options.setdefault("dynamic", False)
            run = torch.compile(run, **options)
        return run

    def _converter(self, device: torch.device) -> Callable[[Any], Tensor]:
        nb = device.type != "cpu"
        dtype = self.storage_dtype
        cl = self.channels_last

        def convert(value: Any) -> Tensor:
            x = value if isinstance(value, Tensor) else torch.as_tensor(value)
            if x.device != device:
                x = x.to(device, non_blocking=nb)
            if dtype is not None and x.is_floating_point() and x.dtype != dtype:
                x = x.to(dtype)
            if cl and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        return convert

    # --- running -------------------------------------------------------------------------

    def forward(self, outputs: Sequence[str] | None = None, **inputs: Any) -> dict[str, Tensor]:
        graph = self._graph(outputs)
        if inputs.keys() != graph.required:
            self._check_inputs(inputs, graph)
        results = graph.run(*(convert(inputs[name]) for name, convert in graph.feeds))
        return dict(zip(graph.outputs, results, strict=True))

    def run_layers(self, before: LayerHook, after: LayerHook,
                   outputs: Sequence[str] | None = None, **inputs: Any) -> dict[str, Tensor]:
        """A forward pass node by node (``torch.fx.Interpreter``, never compiled), calling
        ``before(layer, inputs)`` ahead of each layer's first node and ``after(layer,
        outputs)`` behind its last; a layer's transfers count as its own. For per-layer
        timing (``netdsl time``) and inspection."""
        graph = self._graph(outputs)
        if inputs.keys() != graph.required:
            self._check_inputs(inputs, graph)
        args = [convert(inputs[name]) for name, convert in graph.feeds]
        interp = _LayerInterpreter(graph.module, before, after)
        with self._autocast():
            results = interp.run(*args)
        return dict(zip(graph.outputs, results, strict=True))

    def _autocast(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if self.autocast_dtype is not None:
            for t in self._device_types:
                stack.enter_context(torch.autocast(t, dtype=self.autocast_dtype))
        return stack

    def _check_inputs(self, inputs: Mapping[str, Any], graph: _Graph) -> None:
        for name in inputs:
            if name not in self._program.inputs:
                raise DataError(
                    f"'{name}' is not an input of net '{self.net.name or self.net.path}'",
                    None, did_you_mean(name, self.inputs)
                    or f"its inputs are: {', '.join(self.inputs) or 'none'}")
        missing = sorted(graph.required - inputs.keys())
        if missing:
            raise DataError(
                f"missing input{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(needed to compute {', '.join(graph.outputs)})", None,
                "pass the input blobs as keyword arguments, e.g. net(data=x, label=y)")

    def layer_modules(self) -> dict[str, nn.Module]:
        """Layer name -> the module the program calls for it, for the layers lowered to a
        module (one shard's module, or a ``ModuleList`` of its shards'); layers lowered to
        a stateless call or an alias are not here. For running the net layer by layer
        (:class:`netdsl.api.Net`)."""
        out: dict[str, nn.Module] = {}
        for st in self._program.steps:
            if st.target is not None and st.layer not in out:
                out[st.layer] = self.layers[st.target.split(".")[0]]
        return out

    def required_inputs(self, outputs: Sequence[str] | None = None) -> frozenset[str]:
        """The input blobs a forward asking for ``outputs`` (default: the net's) needs."""
        return self._graph(outputs).required

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
            total = term if total is None else total + term.to(total.device)
        assert total is not None
        return total

    # --- Caffe's view of the parameters -------------------------------------------------

    def blob_keys(self) -> tuple[str, ...]:
        """Every ``<layer>.<blob>`` key, in layer and Caffe blob order."""
        return tuple(self._blobs)

    def state_dict(  # type: ignore[override]  # torch's overloads return the destination's type
        self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> dict[str, Tensor]:
        """``<layer>.<blob>`` -> the blob with Caffe's full shape, whatever the placement.

        A blob divided between shards is concatenated (a copy, on the first shard's
        device); a whole one is the tensor itself (detached unless ``keep_vars``).
        """
        out: dict[str, Tensor] = destination if destination is not None else {}
        for key, ref in self._blobs.items():
            if len(ref.parts) == 1 and keep_vars:
                out[prefix + key] = ref.parts[0].tensor
            else:
                out[prefix + key] = ref.full()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Load ``<layer>.<blob>`` tensors (Caffe's shapes; torch tensors or arrays),
        splitting each between the shards that hold it. ``assign`` is not supported."""
        from torch.nn.modules.module import _IncompatibleKeys

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
                # learnable: the lowering made it an nn.Parameter (ref.learnable says so)
                yield pre + name, cast(nn.Parameter, t)
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
            grads = [g for p in ref.parts if (g := p.tensor.grad) is not None]
            if len(grads) < len(ref.parts):
                out[key] = None
            elif len(grads) == 1:
                out[key] = grads[0]
            else:
                dev = grads[0].device
                out[key] = torch.cat([g.to(dev) for g in grads],
                                     ref.axis if ref.axis is not None else 0)
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

    def share_weights_from(self, other: CompiledNet) -> list[str]:
        """Hold ``other``'s tensors for every blob both nets have, as Caffe's
        ``ShareTrainedLayersWith`` (a TEST net sharing the TRAIN net's weights: nothing is
        copied before a test). Returns the keys shared; a blob the two nets hold
        differently (other shards, devices or dtypes) is not shared, so copy it with
        ``load_state_dict`` when it matters."""
        shared = []
        for key, ref in self._blobs.items():
            theirs = other._blobs.get(key)
            if theirs is None or not _same_layout(ref, theirs):
                continue
            for part, their in zip(ref.parts, theirs.parts, strict=True):
                setattr(part.module, part.attr, their.tensor)
            shared.append(key)
        return shared

    def sync_batch_statistics(self, reduce: Reduce | None) -> list[str]:
        """Make the layers that normalise with the batch's statistics take them over every
        process's batch: ``reduce`` sums a tensor over the processes, differentiably
        (``torch.distributed.nn.functional.all_reduce``); ``None`` makes them local again.
        Returns those layers' names."""
        names = []
        for name, module in self.layers.items():
            for m in module.modules():
                if isinstance(m, BatchStatistics):
                    m.reduce = reduce
                    names.append(name)
        return names

    def extra_repr(self) -> str:
        devs = ", ".join(f"{k}={v}" for k, v in self.devices.items())
        return f"net={self.net.name!r}, phase={self.net.phase.value}, devices=[{devs}]"


def _same_layout(a: BlobRef, b: BlobRef) -> bool:
    if len(a.parts) != len(b.parts) or tuple(a.shape) != tuple(b.shape):
        return False
    for p, q in zip(a.parts, b.parts, strict=True):
        t, u = p.tensor, q.tensor
        if t.shape != u.shape or t.device != u.device or t.dtype != u.dtype:
            return False
        if type(t) is not type(u):  # a Parameter must stay a Parameter, a buffer a buffer
            return False
    return True


def _forget_shard_keys(module: CompiledNet, incompatible: Any) -> None:
    """After torch's recursive load: the shard modules' paths were never keys."""
    inner = module._load_prefix + "layers."
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys
                                    if not k.startswith(inner)]


class _LayerInterpreter(fx.Interpreter):
    """Runs a graph node by node, bracketing each layer's nodes with hooks."""

    def __init__(self, module: fx.GraphModule, before: LayerHook, after: LayerHook) -> None:
        super().__init__(module)
        self.before, self.after = before, after
        nodes = [n for n in module.graph.nodes if n.meta.get("layer")]
        self.last: dict[str, fx.Node] = {n.meta["layer"]: n for n in nodes}
        self.first: dict[str, fx.Node] = {}
        for n in nodes:
            self.first.setdefault(n.meta["layer"], n)
        inside: dict[str, set[fx.Node]] = {}
        for n in nodes:
            inside.setdefault(n.meta["layer"], set()).add(n)
        self.reads = {layer: [a for n in ns for a in n.all_input_nodes if a not in ns]
                      for layer, ns in inside.items()}
        self.makes = {layer: [n for n in ns if any(u not in ns for u in n.users)]
                      for layer, ns in inside.items()}

    def run_node(self, n: fx.Node) -> Any:
        layer = n.meta.get("layer")
        if layer and self.first[layer] is n:
            self.before(layer, [self.env[a] for a in self.reads[layer]])
        result = super().run_node(n)
        if layer and self.last[layer] is n:
            self.env[n] = result
            outs = [self.env[m] for m in self.makes[layer] if m in self.env]
            self.after(layer, [t for o in outs for t in (o if isinstance(o, tuple) else (o,))])
        return result
