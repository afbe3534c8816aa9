"""The torch side of Caffe Python layers: the layer's numpy forward and backward as a
``torch.autograd.Function``, held by a module (the compiled net's kernel for the layer).

Imported by lowering only (it imports torch; the rest of :mod:`netdsl.pycaffe` does
not). The bottoms are copied to the CPU as numpy arrays (float64 stays float64, any
other dtype becomes float32, as Caffe's blobs are), the tops come back as tensors on the
first bottom's device (or the module's, for a layer without bottoms). ``backward`` runs
the layer's ``backward(top, propagate_down, bottom)`` with ``propagate_down[i]`` true
for each bottom autograd needs a gradient for. A layer without bottoms (a data layer)
or without ``backward`` runs forward only.

User code is plain Python, so the module is kept out of ``torch.compile``'s graphs
(``torch.compiler.disable``): a compiled net breaks its graph around it. The tops'
shapes are whatever the layer's ``forward`` makes, so they may differ from those
``netdsl shapes`` printed (the Faster R-CNN proposal layer's number of ROIs does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from ..diagnostics import NetdslError
from . import shim
from .runner import PythonLayer, UserCodeError

__all__ = ["PythonLayerModule", "user_error"]


def _numpy(t: Tensor) -> npt.NDArray[Any]:
    t = t.detach().to("cpu")
    if t.dtype != torch.float64:
        t = t.float()
    out: npt.NDArray[Any] = t.numpy()
    return out


def user_error(e: UserCodeError) -> NetdslError:
    """The error as a diagnostic, placed where the user's code raised it, if known."""
    where = next((span for text, span in e.notes if text == "raised here"), None)
    notes = [(text, span) for text, span in e.notes if span is not where]
    return NetdslError(e.message, where, e.hint, notes)


class _Run(torch.autograd.Function):
    """``apply(layer, device, *bottoms) -> tops``: one forward of a Python layer."""

    @staticmethod
    def forward(ctx: Any, layer: PythonLayer, device: torch.device, *bottoms: Tensor
                ) -> tuple[Tensor, ...]:
        try:
            bottom, top = layer.forward([_numpy(b) for b in bottoms])
        except UserCodeError as e:
            raise user_error(e) from e
        ctx.layer, ctx.blobs = layer, (bottom, top)
        ctx.bottoms = [(b.device, b.dtype) for b in bottoms]
        out = bottoms[0].device if bottoms else device
        return tuple(torch.from_numpy(np.array(t.data)).to(out) for t in top)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        need = tuple(bool(n) for n in ctx.needs_input_grad[2:])
        if not any(need):
            return (None, None, *(None for _ in need))
        bottom, top = ctx.blobs
        try:
            diffs = ctx.layer.backward(bottom, top, [_numpy(g) for g in grads], need)
        except UserCodeError as e:
            raise user_error(e) from e
        out: list[Tensor | None] = []
        for n, d, (device, dtype) in zip(need, diffs, ctx.bottoms, strict=True):
            out.append(torch.from_numpy(d).to(device, dtype) if n else None)
        return (None, None, *out)


class PythonLayerModule(nn.Module):
    """The kernel of one Python layer: ``module(*bottoms)`` is the tops (one tensor for
    one top, else a tuple). ``module.training`` is the phase the layer sees."""

    anchor: Tensor

    def __init__(self, layer: PythonLayer) -> None:
        super().__init__()
        self.layer = layer
        # Where a layer without bottoms puts its tops (moves with the module).
        self.register_buffer("anchor", torch.zeros(0), persistent=False)

    @torch.compiler.disable  # type: ignore[untyped-decorator]  # user numpy code: not traced
    def forward(self, *bottoms: Tensor) -> Tensor | tuple[Tensor, ...]:
        self.layer.set_phase(shim.TRAIN if self.training else shim.TEST)
        anchor = self.anchor
        if self.layer.n_tops == 0:
            try:
                self.layer.forward([_numpy(b) for b in bottoms])
            except UserCodeError as e:
                raise user_error(e) from e
            return ()
        tops: tuple[Tensor, ...] = _Run.apply(  # type: ignore[no-untyped-call]  # untyped
            self.layer, anchor.device, *bottoms)
        return tops[0] if len(tops) == 1 else tops

    def extra_repr(self) -> str:
        return f"{self.layer.what}, param_str={self.layer.param_str!r}"
