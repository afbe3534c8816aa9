"""RNN (BVLC caffe ``rnn_layer.cpp``), and what it shares with LSTM: Caffe's
RecurrentLayer (``recurrent_layer.cpp``, ``include/caffe/layers/recurrent_layer.hpp``).

Caffe builds both as an unrolled inner net over the T timesteps of a batch; their
learnable blobs are that net's unshared parameters, in the order its layers create
them (``FillUnrolledNet``), which is the order here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..fields import doc
from . import register
from .base import Arity, Filler, Kernel, LayerType, Shape, ShapeContext, count


@dataclass(frozen=True)
class RecurrentParams:
    num_output: int = field(default=0, metadata=doc("size of the hidden state and the output"))
    weight_filler: Filler = field(default=Filler(), metadata=doc("weight initialiser"))
    bias_filler: Filler = field(default=Filler(), metadata=doc("bias initialiser"))
    debug_info: bool = field(default=False, metadata=doc("Caffe's inner-net debug log; no effect"))
    expose_hidden: bool = field(
        default=False, metadata=doc("initial state as extra bottoms, final state as extra tops")
    )


class Recurrent(LayerType[RecurrentParams]):
    """Caffe's RecurrentLayer: the bottoms, tops, checks and blobs LSTM and RNN share.

    Bottoms: ``x`` ``(T, N, ...)``, ``cont`` ``(T, N)``, an optional static input
    ``x_static`` ``(N, ...)``, and with ``expose_hidden`` the initial state blobs
    ``(1, N, num_output)``. Tops: the output ``(T, N, num_output)``, and with
    ``expose_hidden`` the final state blobs.
    """

    caffe_params = ("recurrent_param",)
    Params = RecurrentParams
    #: the hidden-state blobs (``h``, or ``h`` and ``c``) and the gate rows per output
    states: ClassVar[tuple[str, ...]] = ("h",)
    gates: ClassVar[int] = 1
    #: names of the input weight, its bias and the static weight
    input_blobs: ClassVar[tuple[str, str, str]] = ("", "", "")

    def caffe_blob_names(self, count: int) -> tuple[str, ...]:
        """With a static input (one blob more) Caffe's unrolled net creates its weight third."""
        if count == len(self.blobs) + 1:
            return (*self.blobs[:2], self.input_blobs[2], *self.blobs[2:])
        return self.blobs

    def recurrent_shapes(self, p: RecurrentParams) -> dict[str, Shape]:
        """The blobs after the static weight (W_hc; W_hh, W_ho, b_o)."""
        raise NotImplementedError

    def _static(self, p: RecurrentParams, bottoms: tuple[Shape, ...]) -> bool:
        return len(bottoms) > 2 + (len(self.states) if p.expose_hidden else 0)

    def shape(self, p: RecurrentParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        if p.num_output <= 0:
            raise ctx.error("num_output must be positive", "num_output",
                            "set recurrent_param { num_output: ... }, the size of the state")
        exposed = len(self.states) if p.expose_hidden else 0
        state_names = ", ".join(f"{s}0" for s in self.states)
        lo = 2 + exposed
        if not lo <= len(bottoms) <= lo + 1:
            wanted = "x, cont[, x_static]" + (f", {state_names}" if exposed else "")
            raise ctx.error(f"takes {lo} or {lo + 1} bottoms ({wanted}), got {len(bottoms)}",
                            "bottom", None if exposed else
                            "expose_hidden: true adds the initial state as bottoms")
        if len(ctx.tops) != 1 + exposed:
            wanted = "the output" + (", " + ", ".join(f"{s}T" for s in self.states)
                                     if exposed else "")
            raise ctx.error(f"makes exactly {1 + exposed} tops ({wanted}), got {len(ctx.tops)}",
                            "top")
        x, cont = bottoms[0], bottoms[1]
        if len(x) < 3:  # Caffe: >= 2 axes, and its inner InnerProduct needs axis 2
            raise ctx.error(f"x must have at least 3 axes (timesteps, streams, features...), "
                            f"got {list(x)}", "bottom")
        steps, streams = x[0], x[1]
        if steps < 1:  # Caffe's inner Concat of the T outputs needs at least one
            raise ctx.error(f"x {list(x)} has no timesteps", "bottom")
        if len(cont) != 2:
            raise ctx.error(f"cont must have exactly 2 axes (timesteps, streams), got "
                            f"{list(cont)}", "bottom")
        if cont != (steps, streams):
            raise ctx.error(f"cont {list(cont)} must be timesteps x streams of x: "
                            f"{[steps, streams]}", "bottom")
        state = (1, streams, p.num_output)
        rest = bottoms[2:]
        if self._static(p, bottoms):
            xs, rest = rest[0], rest[1:]
            if len(xs) < 2:  # Caffe: >= 1 axis, and its inner InnerProduct needs axis 1
                raise ctx.error(f"x_static must have at least 2 axes (streams, features...), "
                                f"got {list(xs)}", "bottom")
            if xs[0] != streams:
                raise ctx.error(f"x_static {list(xs)} must have x's {streams} streams as its "
                                "first axis", "bottom")
        for name, s in zip(self.states[:exposed], rest, strict=True):
            if s != state:
                raise ctx.error(f"the initial {name} {list(s)} must have shape {list(state)}",
                                "bottom")
        return ((steps, streams, p.num_output), *(state,) * exposed)

    def param_shapes(self, p: RecurrentParams, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        rows = self.gates * p.num_output
        w_x, b, w_static = self.input_blobs
        out: dict[str, Shape] = {w_x: (rows, count(bottoms[0][2:])), b: (rows,)}
        if self._static(p, bottoms):
            out[w_static] = (rows, count(bottoms[2][1:]))
        return out | self.recurrent_shapes(p)

    def macs(self, p: RecurrentParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
             ) -> int:
        steps, streams = bottoms[0][0], bottoms[0][1]
        shapes = self.param_shapes(p, bottoms)
        w_static = self.input_blobs[2]
        per_step = sum(count(s) for k, s in shapes.items() if len(s) == 2 and k != w_static)
        return steps * streams * per_step + streams * count(shapes.get(w_static, (0,)))

    def fillers(self, p: RecurrentParams) -> dict[str, Filler]:
        names = (*self.input_blobs, *self.recurrent_shapes(p))
        return {n: p.bias_filler if n.startswith("b_") else p.weight_filler for n in names}


@register
class RNN(Recurrent):
    """Elman recurrent net over T timesteps (Caffe RNNLayer).

    ``h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static])`` and
    the output ``o_t = tanh(W_ho h_t + b_o)``. ``cont_t = 0`` starts a new sequence;
    without ``expose_hidden`` the state carries over from the previous batch, as in Caffe.
    """

    bottoms = Arity(2, 4)
    tops = Arity(1, 2)
    blobs = ("W_xh", "b_h", "W_hh", "W_ho", "b_o")
    legacy_blob_axes = (2, 1, 2, 2, 1)
    input_blobs = ("W_xh", "b_h", "W_xh_static")

    def recurrent_shapes(self, p: RecurrentParams) -> dict[str, Shape]:
        h = p.num_output
        return {"W_hh": (h, h), "W_ho": (h, h), "b_o": (h,)}

    def lower(self, p: RecurrentParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.recurrent import RNN as Module

        return Module(self.param_shapes(p, bottoms), p.num_output, bottoms[0][1],
                      p.expose_hidden)
