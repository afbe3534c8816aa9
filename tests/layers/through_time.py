"""What the LSTM and RNN tests share: the layer run forward and backward through time in
float64, its gradients checked against the unrolled net's, and Caffe's TestForward (the
whole sequence in one batch equals one timestep per batch, the state carried over)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .helpers import close, lower


class Run(NamedTuple):
    kernel: Any  # the lowered layer (helpers.Lowered)
    x: Any  # the (T, N, ...) input, with its gradient
    static: Any  # the static input (N, ...), with its gradient, or None
    top: Any  # the first top, (T, N, H)
    top_diff: Any  # the diff the backward ran with


def run_through_time(type_name: str, x_shape: tuple[int, ...],
                     static_shape: tuple[int, ...] | None, cont: np.ndarray, hidden: int,
                     seed: int) -> Run:
    """``type_name`` (LSTM or RNN) with ``num_output: hidden`` on a random x (and
    x_static when ``static_shape``), weights halved, forward then backward for a random
    top diff."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    bottoms: tuple[tuple[int, ...], ...] = (x_shape, x_shape[:2])
    rest: tuple[Any, ...] = ()
    if static_shape is not None:
        rest = (torch.randn(static_shape, generator=gen, dtype=torch.float64)
                .requires_grad_(True),)
        bottoms = (*bottoms, static_shape)
    m, tops = lower(type_name, bottoms, num_output=hidden)
    m.kernel.double()
    with torch.no_grad():
        for prm in m.parameters():
            prm.mul_(0.5)
    (top,) = m(x, torch.tensor(cont), *rest)
    assert tuple(top.shape) == tops[0] == (*x_shape[:2], hidden)
    top_diff = torch.randn(top.shape, generator=gen, dtype=torch.float64)
    (top * top_diff).sum().backward()
    return Run(m, x, rest[0] if rest else None, top, top_diff)


def check_gradients(run: Run, grads: dict[str, np.ndarray]) -> None:
    """The input's, every blob's and the static input's gradients against the unrolled
    net's (``grads``: ``dx``, ``dxs`` and the blob names)."""
    close(run.x.grad, grads["dx"], 1e-12)
    for name, prm in run.kernel.kernel.named_parameters():
        close(prm.grad, grads[name], 1e-12)
    if run.static is not None:
        close(run.static.grad, grads["dxs"], 1e-12)


def stepwise_equals_whole(type_name: str, cont: np.ndarray, hidden: int, seed: int
                          ) -> tuple[Any, Any, Any]:
    """Caffe's TestForward: the sequence in one batch equals one timestep per batch.
    Then the next batch, with cont all 1, continues from the last state. Returns the
    whole-sequence layer, the input and that next batch's top."""
    import torch

    steps, streams = cont.shape
    x = torch.randn(steps, streams, 6, dtype=torch.float64)
    whole, _ = lower(type_name, ((steps, streams, 6), (steps, streams)), num_output=hidden,
                     seed=seed)
    step, _ = lower(type_name, ((1, streams, 6), (1, streams)), num_output=hidden, seed=seed)
    whole.kernel.double()
    step.kernel.double()
    c = torch.tensor(cont)
    (full,) = whole(x, c)
    for t in range(steps):
        close(step(x[t:t + 1], c[t:t + 1])[0][0], full[t], 1e-12)
    (nxt,) = whole(x, torch.ones(steps, streams, dtype=torch.float64))
    return whole, x, nxt
