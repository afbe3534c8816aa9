"""LSTMUnit (BVLC caffe ``lstm_unit_layer.cpp``): one LSTM step, from gate inputs."""

from __future__ import annotations

from . import register
from .base import Arity, Call, Kernel, LayerType, NoParams, Shape, ShapeContext


@register
class LSTMUnit(LayerType[NoParams]):
    """One LSTM cell step from precomputed gate inputs (Caffe LSTMUnitLayer).

    Bottoms: ``c_prev`` ``(1, N, H)``, gate inputs ``(1, N, 4H)`` in Caffe's order i, f,
    o, g, and ``cont`` ``(1, N)``. Tops: ``c = cont sigmoid(f) c_prev + sigmoid(i)
    tanh(g)`` and ``h = sigmoid(o) tanh(c)``, both ``(1, N, H)``.
    """

    bottoms = Arity.exact(3)
    tops = Arity.exact(2)
    Params = NoParams

    def shape(self, p: NoParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        names = ("c_prev", "the gate input", "cont")
        streams = bottoms[0][1] if len(bottoms[0]) > 1 else None
        for i, (b, what) in enumerate(zip(bottoms, names, strict=True)):
            axes = 2 if i == 2 else 3
            if len(b) != axes:
                raise ctx.error(f"{what} must have {axes} axes, got {list(b)}", "bottom")
            if b[0] != 1:
                raise ctx.error(f"{what} {list(b)} must be a single timestep (first axis 1)",
                                "bottom")
            if b[1] != streams:
                raise ctx.error(f"{what} {list(b)} must have c_prev's {streams} streams",
                                "bottom")
        hidden = bottoms[0][2]
        if bottoms[1][2] != 4 * hidden:
            raise ctx.error(f"the gate input {list(bottoms[1])} must have 4 x {hidden} = "
                            f"{4 * hidden} values per stream (i, f, o, g)", "bottom")
        return (bottoms[0], bottoms[0])

    def lower(self, p: NoParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.recurrent import lstm_unit

        return Call(lstm_unit)
