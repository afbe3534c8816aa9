"""LSTM (BVLC caffe ``lstm_layer.cpp`` over ``recurrent_layer.cpp``)."""

from __future__ import annotations

from . import register
from .base import Arity, Kernel, Shape
from .rnn import Recurrent, RecurrentParams


@register
class LSTM(Recurrent):
    """Long short-term memory over T timesteps (Caffe LSTMLayer).

    Per step, ``gates = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t h_{t-1})``,
    rows in Caffe's order i, f, o, g (not torch's i, f, g, o); then LSTMUnit:
    ``c_t = cont_t sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)``, ``h_t = sigmoid(o) tanh(c_t)``.
    ``cont_t = 0`` starts a new sequence; without ``expose_hidden`` the state carries
    over from the previous batch, as in Caffe. With a static input Caffe's blobs are
    W_xc, b_c, W_xc_static, W_hc, in that order.
    """

    bottoms = Arity(2, 5)
    tops = Arity(1, 3)
    blobs = ("W_xc", "b_c", "W_hc")
    legacy_blob_axes = (2, 1, 2)
    states = ("h", "c")
    gates = 4
    input_blobs = ("W_xc", "b_c", "W_xc_static")

    def recurrent_shapes(self, p: RecurrentParams) -> dict[str, Shape]:
        return {"W_hc": (4 * p.num_output, p.num_output)}

    def lower(self, p: RecurrentParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.recurrent import LSTM as Module

        return Module(self.param_shapes(p, bottoms), p.num_output, bottoms[0][1],
                      p.expose_hidden)
