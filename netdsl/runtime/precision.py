"""What ``--precision`` and the ``runtime {}`` section mean for a run: the dtype the net is
compiled with, and, for fp16, dynamic loss scaling.

bf16 has float32's range, so its gradients need no help; fp16's small range makes small
gradients underflow to zero, so the loss is multiplied by a large scale before the
backward pass and the gradients divided by it before the update. A step whose gradients
overflow (inf or NaN) is skipped and the scale halved; after ``growth_interval`` good
steps it is doubled (torch's ``GradScaler`` policy, which needs the gradients unscaled
before Caffe's update rule clips and decays them, hence this small class).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch

from netdsl.sections import RuntimeConfig

__all__ = ["DTYPES", "LossScaler", "effective_runtime"]

#: The dtype each precision compiles the net with (``None``: float32 as written).
DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def effective_runtime(section: RuntimeConfig, **flags: Any) -> RuntimeConfig:
    """The spec's ``runtime {}`` with the command line's flags (those not ``None``) over it;
    CUDA graphs imply compiling."""
    given: Mapping[str, Any] = {k: v for k, v in flags.items() if v is not None}
    rt = replace(section, **given)
    return replace(rt, compile=True) if rt.cuda_graphs else rt


class LossScaler:
    """Dynamic loss scaling for fp16 (see the module docstring)."""

    def __init__(self, scale: float = 2.0**16, growth_interval: int = 2000) -> None:
        self.scale = scale
        self.growth_interval = growth_interval
        self.good_steps = 0
        self.skipped = 0

    def unscale(self, params: Iterable[torch.Tensor]) -> bool:
        """Divide the gradients by the scale; whether they are all finite (a sync)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return True
        found = torch.zeros(1, device=grads[0].device)
        inv = torch.full((1,), 1.0 / self.scale, device=grads[0].device)
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for g in grads:
            by_device.setdefault(g.device, []).append(g)
        for dev, gs in by_device.items():
            f = found.to(dev)
            torch._amp_foreach_non_finite_check_and_unscale_(gs, f, inv.to(dev))
            found = found + f.to(found.device)
        ok = bool(found.item() == 0)
        if ok:
            self.good_steps += 1
            if self.good_steps % self.growth_interval == 0:
                self.scale *= 2.0
        else:
            self.skipped += 1
            self.good_steps = 0
            self.scale /= 2.0
        return ok

    def state(self) -> dict[str, float | int]:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state(self, state: Mapping[str, float | int]) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
        self.skipped = int(state["skipped"])
