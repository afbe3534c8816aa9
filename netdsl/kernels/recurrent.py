"""Caffe's recurrent layers: LSTMUnit (``lstm_unit_layer.cpp``), and LSTM and RNN, which
Caffe builds as an unrolled inner net (``recurrent_layer.cpp``, ``lstm_layer.cpp``,
``rnn_layer.cpp``) and netdsl runs as a loop over the T timesteps.

Inputs are time-major: ``x`` is ``(T, N, ...)``, ``cont`` is ``(T, N)`` (0 where a
sequence starts: the state carried into that step is multiplied by it). The blobs are
Caffe's, with Caffe's names and shapes, so weights load from a caffemodel: LSTM ``W_xc``
``(4H, I)``, ``b_c`` ``(4H,)``, ``W_xc_static`` ``(4H, S)`` with a static input, ``W_hc``
``(4H, H)``; the gate rows are ordered i, f, o, g (torch's ``nn.LSTM`` uses i, f, g, o
and has no ``cont``, so it is not used). RNN ``W_xh`` ``(H, I)``, ``b_h``, ``W_xh_static``,
``W_hh`` ``(H, H)``, ``W_ho`` ``(H, H)``, ``b_o``.

Caffe's state handling is kept: without ``expose_hidden`` the state a forward pass
starts from is the last one the previous pass ended with (zeros at first), held here in
buffers that are not weights; no gradient crosses from one pass to the next. With
``expose_hidden`` the initial state comes from bottoms and the final one goes to tops,
and Caffe shares only their data, not their diffs: neither gets a gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .convolution import Shape, empty_param

__all__ = ["LSTM", "RNN", "lstm_unit"]


def _forget_gate(x_f: Tensor, cont: Tensor) -> Tensor:
    """Caffe's ``f = cont == 0 ? 0 : cont * sigmoid(x_f)``, with Caffe's backward
    ``df/dx_f = f (1 - f)`` (the true derivative only for a 0/1 ``cont``)."""
    f = torch.where(cont == 0, torch.zeros_like(x_f), cont * torch.sigmoid(x_f))
    slope = (f * (1 - f)).detach()
    return f.detach() + slope * (x_f - x_f.detach())


def lstm_unit(c_prev: Tensor, x: Tensor, cont: Tensor) -> tuple[Tensor, Tensor]:
    """Caffe's LSTMUnit: ``c_prev`` ``(..., H)``, gate inputs ``x`` ``(..., 4H)`` in the
    order i, f, o, g, ``cont`` ``(...)``. Returns ``(c, h)``: ``c = f c_prev + i g``,
    ``h = o tanh(c)``, with ``i, o = sigmoid``, ``g = tanh`` and the forget gate of
    :func:`_forget_gate`. ``cont`` gets no gradient."""
    hidden = c_prev.shape[-1]
    x_i, x_f, x_o, x_g = torch.split(x, hidden, dim=-1)
    cont = cont.detach().to(x.dtype).unsqueeze(-1)
    i, o, g = torch.sigmoid(x_i), torch.sigmoid(x_o), torch.tanh(x_g)
    c = _forget_gate(x_f, cont) * c_prev + i * g
    return c, o * torch.tanh(c)


class _Recurrent(nn.Module):
    """What LSTM and RNN share: input transforms, the carried state, the bottoms."""

    def __init__(self, shapes: Mapping[str, Shape], names: tuple[str, str, str],
                 num_output: int, streams: int, states: tuple[str, ...],
                 expose_hidden: bool) -> None:
        super().__init__()
        self._w_x, self._b, self._w_static = names
        for name, shape in shapes.items():
            setattr(self, name, empty_param(shape))
        self.static = self._w_static in shapes
        self.num_output, self.expose_hidden = num_output, expose_hidden
        self.state_names = states  # buffers of the carried state, when not exposed
        if not expose_hidden:
            for name in self.state_names:
                self.register_buffer(name, torch.zeros(1, streams, num_output), persistent=False)

    def _inputs(self, x: Tensor, cont: Tensor, rest: tuple[Tensor, ...]
                ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``W x_t + b`` for every step (plus the static term), ``cont`` as x's dtype,
        and the initial state."""
        steps, streams = x.shape[0], x.shape[1]
        xw = F.linear(x.reshape(steps, streams, -1), getattr(self, self._w_x),
                      getattr(self, self._b))
        if self.static:
            static = rest[0]
            xw = xw + F.linear(static.reshape(streams, -1), getattr(self, self._w_static))
            rest = rest[1:]
        c = cont.detach().to(x.dtype)
        if self.expose_hidden:
            init = [r.detach().to(x.dtype).reshape(streams, self.num_output) for r in rest]
        else:
            init = []
            for name in self.state_names:
                buf: Tensor = getattr(self, name)
                fits = tuple(buf.shape) == (1, streams, self.num_output)
                # a copy: the buffer is overwritten after the pass, autograd keeps this
                init.append(buf[0].to(x.dtype, copy=True) if fits
                            else x.new_zeros(streams, self.num_output))
        return xw, c, init

    def _finish(self, out: list[Tensor], final: list[Tensor]) -> Tensor | tuple[Tensor, ...]:
        stacked = torch.stack(out)
        if self.expose_hidden:
            return (stacked, *(s.detach().unsqueeze(0) for s in final))
        with torch.no_grad():
            for name, s in zip(self.state_names, final, strict=True):
                buf: Tensor = getattr(self, name)
                if buf.shape[1] == s.shape[0]:
                    buf.copy_(s.detach().unsqueeze(0))
        return stacked

    def extra_repr(self) -> str:
        return (f"num_output={self.num_output}, static={self.static}, "
                f"expose_hidden={self.expose_hidden}")


class LSTM(_Recurrent):
    """Caffe's LSTM layer: ``forward(x, cont[, x_static][, h0, c0])`` returns ``h``
    ``(T, N, H)``, and with ``expose_hidden`` also ``h_T`` and ``c_T`` ``(1, N, H)``.

    Per step: ``gates = W_xc x_t + b_c [+ W_xc_static x_static] + W_hc (cont_t h_{t-1})``,
    then :func:`lstm_unit` with ``c_{t-1}`` and ``cont_t``.
    """

    W_hc: Tensor

    def __init__(self, shapes: Mapping[str, Shape], num_output: int, streams: int,
                 expose_hidden: bool) -> None:
        super().__init__(shapes, ("W_xc", "b_c", "W_xc_static"), num_output, streams,
                         ("hidden", "cell"), expose_hidden)

    def forward(self, x: Tensor, cont: Tensor, *rest: Tensor) -> Tensor | tuple[Tensor, ...]:
        xw, cont, (h, c) = self._inputs(x, cont, rest)
        w_hc = self.W_hc
        out = []
        for t in range(x.shape[0]):
            gates = xw[t] + F.linear(cont[t].unsqueeze(-1) * h, w_hc)
            c, h = lstm_unit(c, gates, cont[t])
            out.append(h)
        return self._finish(out, [h, c])


class RNN(_Recurrent):
    """Caffe's RNN layer: ``forward(x, cont[, x_static][, h0])`` returns ``o``
    ``(T, N, H)``, and with ``expose_hidden`` also ``h_T`` ``(1, N, H)``.

    Per step: ``h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static
    x_static])`` and ``o_t = tanh(W_ho h_t + b_o)``.
    """

    W_hh: Tensor
    W_ho: Tensor
    b_o: Tensor

    def __init__(self, shapes: Mapping[str, Shape], num_output: int, streams: int,
                 expose_hidden: bool) -> None:
        super().__init__(shapes, ("W_xh", "b_h", "W_xh_static"), num_output, streams,
                         ("hidden",), expose_hidden)

    def forward(self, x: Tensor, cont: Tensor, *rest: Tensor) -> Tensor | tuple[Tensor, ...]:
        xw, cont, (h,) = self._inputs(x, cont, rest)
        w_hh, w_ho, b_o = self.W_hh, self.W_ho, self.b_o
        out = []
        for t in range(x.shape[0]):
            h = torch.tanh(F.linear(cont[t].unsqueeze(-1) * h, w_hh) + xw[t])
            out.append(torch.tanh(F.linear(h, w_ho, b_o)))
        return self._finish(out, [h])
