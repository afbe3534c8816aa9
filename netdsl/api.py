"""pycaffe's ``caffe.Net`` over a compiled net: ``netdsl.Net(spec, weights, phase)``.

::

    net = netdsl.Net("deploy.prototxt", "weights.caffemodel", phase="test")
    net.blobs["data"].data[...] = images          # or net.forward(data=images)
    out = net.forward()                           # {"prob": tensor}
    net.blobs["conv1"].data.shape                 # torch.Size([10, 96, 55, 55])
    net.params["conv1"][0].data                   # the weights, Caffe's layout
    net.forward(start="conv2", end="pool2")       # from conv2's bottoms as they are now
    net.backward()                                # diffs: net.blobs[b].diff, params' .diff

As pycaffe (BVLC/caffe python/caffe/pycaffe.py ``_Net_forward``/``_Net_backward`` and
python/caffe/_caffe.cpp): ``blobs`` is ordered as the layers make the blobs, the input
blobs first, an in-place layer's top being the blob it overwrites; ``params`` maps each
layer with blobs to ``[weights, bias, ...]`` in Caffe's layout; ``forward(start, end)``
runs a range of layers reading the bottoms' current contents (so a blob set by hand is
what the range reads), ``backward(start, end)`` propagates the tops' current diffs down
a range. A loss top's diff starts at its ``loss_weight``, as Caffe's ``SetLossWeights``
leaves it, so ``backward()`` after ``forward()`` gives the objective's gradients.
Parameter diffs accumulate over ``backward`` calls, as in Caffe (the solver clears them).

Differences, said plainly: ``.data`` and ``.diff`` are **torch tensors** (on the net's
device), not numpy arrays; on the CPU ``np.asarray(blob.data)`` is a view without a copy
and ``blob.data[...] = array`` writes into the net. A parameter's ``.data`` is the
parameter itself (detached): writing it edits the net. Any batch size runs: ``forward``
with inputs of another batch replaces the blobs. ``backward`` needs the ``forward``
before it to have run with gradients enabled (the default; not under ``torch.no_grad``).

The net runs layer by layer on one device (the layers' own kernels, as the compiled
graph calls them): for the speed of one fused graph, call ``net.compiled(data=x)``.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .compiled import CompiledNet
from .diagnostics import DataError, UsageError, did_you_mean
from .ir import Layer, Phase
from .ir import Net as IRNet
from .layers.base import Alias, Shape

__all__ = ["Blob", "Net", "NetLayer"]

Spec = str | os.PathLike[str] | IRNet


class Blob:
    """One blob: ``data`` and ``diff`` (torch tensors, views into the net), ``shape``,
    ``count``, ``num``/``channels``/``height``/``width`` and ``reshape`` as pycaffe's."""

    def __init__(self, shape: Shape, device: torch.device, dtype: torch.dtype,
                 diff_fill: float = 0.0) -> None:
        self._shape = tuple(int(d) for d in shape)
        self._device, self._dtype = device, dtype
        self._diff_fill = diff_fill
        self._data: Tensor | None = None
        self._diff: Tensor | None = None

    @property
    def data(self) -> Tensor:
        """The blob's values (zeros until a layer or you write them)."""
        if self._data is None:
            self._data = torch.zeros(self._shape, device=self._device, dtype=self._dtype)
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        self._set_data(torch.as_tensor(value, device=self._device))

    def _set_data(self, t: Tensor) -> None:
        self._data = t
        self._shape = tuple(t.shape)
        if self._diff is not None and tuple(self._diff.shape) != self._shape:
            self._diff = None

    @property
    def diff(self) -> Tensor:
        """The blob's gradient (zeros until a backward writes it; a loss top's starts at
        its loss weight)."""
        if self._diff is None:
            self._diff = torch.full(self._shape, self._diff_fill, device=self._device,
                                    dtype=self._dtype if self._dtype.is_floating_point
                                    else torch.float32)
        return self._diff

    @diff.setter
    def diff(self, value: Any) -> None:
        self._diff = torch.as_tensor(value, device=self._device).reshape(self._shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def count(self) -> int:
        n = 1
        for d in self._shape:
            n *= d
        return n

    def _legacy(self, i: int) -> int:
        return self._shape[i] if i < len(self._shape) else 1

    num = property(lambda self: self._legacy(0), doc="Caffe's legacy first axis")
    channels = property(lambda self: self._legacy(1), doc="Caffe's legacy second axis")
    height = property(lambda self: self._legacy(2), doc="Caffe's legacy third axis")
    width = property(lambda self: self._legacy(3), doc="Caffe's legacy fourth axis")

    def reshape(self, *shape: int) -> None:
        """New shape, contents zero (Caffe's ``Blob::Reshape``; pycaffe then calls
        ``net.reshape()``, which here is not needed: the next forward takes any shape)."""
        self._shape = tuple(int(d) for d in shape)
        self._data = self._diff = None

    def __repr__(self) -> str:
        return f"Blob(shape={list(self._shape)})"


class ParamBlob(Blob):
    """A learnable (or stored) blob of a layer: ``data`` is the tensor the net holds,
    ``diff`` its gradient (``.grad``), which backward passes accumulate into."""

    def __init__(self, tensor: Tensor) -> None:
        super().__init__(tuple(tensor.shape), tensor.device, tensor.dtype)
        self.tensor = tensor

    @property
    def data(self) -> Tensor:
        return self.tensor.detach()

    @data.setter
    def data(self, value: Any) -> None:
        with torch.no_grad():
            self.tensor.copy_(torch.as_tensor(value))

    @property
    def diff(self) -> Tensor:
        if not self.tensor.requires_grad:
            return super().diff
        if self.tensor.grad is None:
            self.tensor.grad = torch.zeros_like(self.tensor)
        return self.tensor.grad

    @diff.setter
    def diff(self, value: Any) -> None:
        self.diff.copy_(torch.as_tensor(value))


@dataclass(frozen=True)
class NetLayer:
    """pycaffe's ``net.layer_dict[name]``: the layer's type, blobs and IR layer."""

    name: str
    type: str
    blobs: list[Blob]
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    ir: Layer = field(repr=False)


@dataclass
class _Record:
    """What one layer's forward left for its backward: its bottoms as autograd leaves
    and its tops as computed."""

    leaves: list[Tensor]
    tops: list[Tensor]


class Net:
    """A compiled net with its weights, driven as pycaffe's ``caffe.Net``.

    Args:
      spec: a ``.net`` or Caffe ``.prototxt`` file, or an ``ir.Net``.
      weights: a ``.caffemodel`` or ``.safetensors`` file (a snapshot's too), or None
        (the fillers' values). ``Net(spec, "test")`` also works, as ``caffe.Net(proto,
        caffe.TEST)``.
      phase: "test" (default) or "train".
      device: one torch device for the whole net (default: ``cuda`` if there is one).
      batch, inputs: the batch and the shapes of data blobs the spec cannot know (a
        Caffe Data layer's), as for ``netdsl.compile``; only for the blobs' first shapes.
      strict: every blob of the net must be in ``weights`` (default: Caffe's
        ``CopyTrainedLayersFrom``, where layers the file lacks keep their fillers).
    """

    def __init__(self, spec: Spec, weights: str | os.PathLike[str] | Phase | None = None,
                 phase: Phase | str = "test", *, device: str | torch.device | None = None,
                 batch: int | None = None, inputs: Mapping[str, Shape] | None = None,
                 overrides: Mapping[str, str] | None = None, plugins: Iterable[str] = (),
                 seed: int | None = 0, dtype: torch.dtype | None = None,
                 strict: bool = False, allow_nonfinite: bool = False) -> None:
        from . import compile as compile_net
        from . import load

        if isinstance(weights, Phase) or (isinstance(weights, str)
                                          and weights.lower() in ("train", "test")):
            phase, weights = weights, None
        phase = Phase.parse(phase) if isinstance(phase, str) else phase
        ir = spec if isinstance(spec, IRNet) else load(os.fspath(spec), phase, overrides,
                                                          plugins)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.compiled: CompiledNet = compile_net(ir, ir.phase, device, batch=batch,
                                                 inputs=inputs, seed=seed, dtype=dtype)
        if weights is not None:
            from .weights import load_net_weights

            load_net_weights(self.compiled, weights, strict=strict,
                             allow_nonfinite=allow_nonfinite)
        self.ir: IRNet = ir
        self.phase = ir.phase
        self._setup()

    # --- structure ---------------------------------------------------------------------

    def _setup(self) -> None:
        c = self.compiled
        for lp in c.plan.layers:
            if len(lp.shards) != 1:
                raise UsageError(
                    f"netdsl.Net runs a net layer by layer on one device; layer "
                    f"'{lp.name}' of '{self.ir.name}' is divided between devices", None,
                    "pass one device (device='cuda:0'), or use netdsl.compile for placement")
        self._modules = c.layer_modules()
        self._devices: dict[str, torch.device] = {}
        for lay, lp in zip(self.ir.layers, c.plan.layers, strict=True):
            d = lp.shards[0].device
            self._devices[lay.name] = torch.device(c.devices[d] if c.plan.logical else d)
        float_type = c.storage_dtype or torch.float32
        self.blobs: OrderedDict[str, Blob] = OrderedDict()
        for lay in self.ir.layers:
            for j, top in enumerate(lay.tops):
                if top in self.blobs:
                    continue
                w = lay.loss_weights[j] if j < len(lay.loss_weights) else 0.0
                dtype = float_type
                if lay.kind.is_input and len(c.shapes.blobs[top]) == 1:
                    dtype = torch.int64  # a label input, as the loaders feed it
                self.blobs[top] = Blob(c.shapes.blobs[top], self._devices[lay.name], dtype,
                                       float(w))
        state = c.state_dict(keep_vars=True)
        self.params: OrderedDict[str, list[Blob]] = OrderedDict()
        for key in c.blob_keys():
            layer = key.rsplit(".", 1)[0] if key.count(".") == 1 else _owner(key, self.ir)
            self.params.setdefault(layer, []).append(ParamBlob(state[key]))
        self.layer_dict: OrderedDict[str, NetLayer] = OrderedDict(
            (lay.name, NetLayer(lay.name, lay.type, self.params.get(lay.name, []),
                                lay.bottoms, lay.tops, lay)) for lay in self.ir.layers)
        self._kernels: dict[str, Any] = {}
        self._records: dict[str, _Record] = {}

    @property
    def inputs(self) -> list[str]:
        """The input blobs (the data layers' tops), which ``forward`` takes by name."""
        return list(self.compiled.inputs)

    @property
    def outputs(self) -> list[str]:
        """The blobs no layer reads (the net's outputs)."""
        return list(self.compiled.outputs)

    @property
    def layers(self) -> list[NetLayer]:
        return list(self.layer_dict.values())

    @property
    def _layer_names(self) -> list[str]:
        return list(self.layer_dict)

    @property
    def top_names(self) -> OrderedDict[str, list[str]]:
        return OrderedDict((n, list(lay.tops)) for n, lay in self.layer_dict.items())

    @property
    def bottom_names(self) -> OrderedDict[str, list[str]]:
        return OrderedDict((n, list(lay.bottoms)) for n, lay in self.layer_dict.items())

    def __repr__(self) -> str:
        return (f"netdsl.Net({self.ir.name!r}, phase={self.phase.value}, "
                f"{len(self.layer_dict)} layers, {len(self.blobs)} blobs)")

    # --- running -----------------------------------------------------------------------

    def _index(self, layer: str | None, default: int, what: str) -> int:
        if layer is None:
            return default
        names = self._layer_names
        if layer not in names:
            raise DataError(f"{what}: there is no layer '{layer}' in net '{self.ir.name}'",
                            None, did_you_mean(layer, names))
        return names.index(layer)

    def _kernel(self, lay: Layer) -> Any:
        """The layer's kernel: its module in the compiled net, else its stateless call
        (lowered again: the program may run an in-place form of it, which would write
        into the blob the layer reads), or an ``Alias``."""
        kernel = self._kernels.get(lay.name)
        if kernel is None:
            kernel = self._modules.get(lay.name)
            if kernel is None:
                row = self.compiled.shapes.of(lay.name)
                kernel = lay.kind.lower(lay.params, row.bottoms, row.tops)
            self._kernels[lay.name] = kernel
        return kernel

    def _autocast(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        dtype = self.compiled.autocast_dtype
        if dtype is not None:
            for t in sorted({d.type for d in self._devices.values()}):
                stack.enter_context(torch.autocast(t, dtype=dtype))
        return stack

    def _set_input(self, name: str, value: Any) -> None:
        if name not in self.compiled.inputs:
            raise DataError(f"'{name}' is not an input of net '{self.ir.name}'", None,
                            did_you_mean(name, self.inputs)
                            or f"its inputs are: {', '.join(self.inputs) or 'none'}")
        blob = self.blobs[name]
        t = torch.as_tensor(value)
        if t.is_floating_point() and blob._dtype.is_floating_point:
            t = t.to(blob._dtype)
        blob._set_data(t.to(blob._device))

    def forward(self, blobs: Sequence[str] | None = None, start: str | None = None,
                end: str | None = None, **inputs: Any) -> dict[str, Tensor]:
        """Run layers ``start`` .. ``end`` (default: all), as pycaffe's ``net.forward``.

        ``inputs`` set input blobs first (torch tensors or arrays, any batch). Each layer
        reads its bottoms' current ``data``. Returns ``{blob: data}`` for the net's
        outputs (with ``end``: that layer's tops) and the blobs named in ``blobs``.
        """
        for name, value in inputs.items():
            self._set_input(name, value)
        first = self._index(start, 0, "start")
        last = self._index(end, len(self.ir.layers) - 1, "end")
        grad = torch.is_grad_enabled()
        with self._autocast():
            for lay in self.ir.layers[first:last + 1]:
                if not lay.kind.is_input:
                    self._forward_layer(lay, grad)
        names = list(self.ir.layers[last].tops) if end is not None else list(self.outputs)
        for b in blobs or ():
            if b not in self.blobs:
                raise DataError(f"there is no blob '{b}' in net '{self.ir.name}'", None,
                                did_you_mean(b, self.blobs))
            names.append(b)
        return {b: self.blobs[b].data for b in dict.fromkeys(names)}

    def _forward_layer(self, lay: Layer, grad: bool) -> None:
        device = self._devices[lay.name]
        xs = [self.blobs[b].data for b in lay.bottoms]
        xs = [x if x.device == device else x.to(device) for x in xs]
        kernel = self._kernel(lay)
        if isinstance(kernel, Alias):
            for top in lay.tops:
                self.blobs[top]._set_data(xs[0])
            self._records.pop(lay.name, None)
            return
        leaves = [x.detach().requires_grad_(grad and x.is_floating_point()) for x in xs]
        out = kernel(*leaves)
        tops = list(out) if isinstance(out, tuple | list) else [out]
        if len(tops) != len(lay.tops):
            raise AssertionError(f"{lay.name}: {len(tops)} outputs for {len(lay.tops)} tops")
        for name, t in zip(lay.tops, tops, strict=True):
            self.blobs[name]._set_data(t.detach())
        if grad and any(t.requires_grad for t in tops):
            self._records[lay.name] = _Record(leaves, tops)
        else:
            self._records.pop(lay.name, None)

    def backward(self, diffs: Sequence[str] | None = None, start: str | None = None,
                 end: str | None = None, **top_diffs: Any) -> dict[str, Tensor]:
        """Propagate diffs down layers ``start`` .. ``end`` (default: the last layer down
        to the first), as pycaffe's ``net.backward``.

        ``top_diffs`` set blobs' ``diff`` first (the outputs', usually). Each layer reads
        its tops' current diffs and writes its bottoms' (summed where several layers read
        a blob; replaced where the layer works in place) and adds to its parameters'
        diffs. Returns ``{blob: diff}`` for the input blobs (with ``end``: that layer's
        bottoms) and the blobs named in ``diffs``.
        """
        for name, value in top_diffs.items():
            if name not in self.blobs:
                raise DataError(f"there is no blob '{name}' in net '{self.ir.name}'", None,
                                did_you_mean(name, self.blobs))
            self.blobs[name].diff = value
        first = self._index(start, len(self.ir.layers) - 1, "start")
        last = self._index(end, 0, "end")
        span = self.ir.layers[last:first + 1]
        for lay in span:  # bottoms a layer adds its diff into start at zero
            for b in lay.bottoms:
                if b not in lay.tops:
                    self.blobs[b].diff.zero_()
        if not self._records:
            raise DataError(
                f"net '{self.ir.name}': backward needs a forward run with gradients first",
                None, "call net.forward() outside torch.no_grad(), then net.backward()")
        for lay in reversed(span):
            if not lay.kind.is_input:
                self._backward_layer(lay)
        names = list(self.ir.layers[last].bottoms) if end is not None else list(self.inputs)
        names += list(diffs or ())
        return {b: self.blobs[b].diff for b in dict.fromkeys(names) if b in self.blobs}

    def _backward_layer(self, lay: Layer) -> None:
        kernel = self._kernel(lay)
        if isinstance(kernel, Alias):
            g = self.blobs[lay.tops[0]].diff.clone()
            for other in lay.tops[1:]:
                g.add_(self.blobs[other].diff.to(g.device))
            self._add_diff(lay, 0, g)
            return
        rec = self._records.get(lay.name)
        if rec is None:  # no forward with gradients, or nothing to differentiate
            return
        outs, grads = [], []
        for name, t in zip(lay.tops, rec.tops, strict=True):
            if t.requires_grad:
                outs.append(t)
                grads.append(self.blobs[name].diff.to(t.device, t.dtype).reshape(t.shape))
        wanted = [x for x in rec.leaves if x.requires_grad]
        wanted += [p for p in self._params_of(lay) if p.requires_grad]
        if not outs or not wanted:
            return
        for x in rec.leaves:
            x.grad = None
        torch.autograd.backward(outs, grads, retain_graph=True, inputs=wanted)
        for k, x in enumerate(rec.leaves):
            if x.requires_grad:
                g = x.grad if x.grad is not None else torch.zeros_like(x)
                x.grad = None
                self._add_diff(lay, k, g)

    def _add_diff(self, lay: Layer, k: int, g: Tensor) -> None:
        blob = self.blobs[lay.bottoms[k]]
        g = g.detach().to(blob.diff.device).reshape(blob.shape)
        if lay.bottoms[k] in lay.tops:
            blob.diff = g.clone()
        else:
            blob.diff.add_(g)

    def _params_of(self, lay: Layer) -> Iterator[Tensor]:
        module = self._modules.get(lay.name)
        if isinstance(module, nn.Module):
            yield from module.parameters()

    # --- convenience -------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the weights (``<layer>.<blob>``) as safetensors (pycaffe's ``net.save``
        writes a caffemodel; ``netdsl weights`` converts)."""
        from .weights import save_weights

        save_weights(path, self.compiled.state_dict())

    def copy_from(self, path: str | os.PathLike[str], *, allow_nonfinite: bool = False
                  ) -> list[str]:
        """Load weights as Caffe's ``CopyTrainedLayersFrom``: matched blobs by name."""
        from .weights import load_net_weights

        return load_net_weights(self.compiled, path, strict=False,
                                allow_nonfinite=allow_nonfinite)


def _owner(key: str, net: IRNet) -> str:
    """The layer of a ``<layer>.<blob>`` key whose layer name holds dots."""
    for lay in net.layers:
        if key.startswith(lay.name + ".") and "." not in key[len(lay.name) + 1:]:
            return lay.name
    return key.rsplit(".", 1)[0]
