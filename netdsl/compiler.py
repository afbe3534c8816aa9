"""The public entry point: a spec (or an ``ir.Net``) -> a runnable :class:`CompiledNet`.

``compile`` runs the whole pipeline: load (parse, upgrade, resolve, build), shapes,
placement, lowering. Logical devices (``gpu:0``, ``gpu:1``) are mapped to torch devices
here; by default onto the CUDA devices there are, round-robin, else the CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import fillers
from .compiled import CompiledNet
from .diagnostics import PlacementError, UsageError
from .ir import Net, Phase
from .layers.base import Shape, count
from .lower import AUTOCAST_DTYPES, lower_program
from .placement import Plan
from .shapes import ShapeTable, human_bytes

__all__ = [
    "CompiledNet",
    "compile",
    "default_devices",
    "lower",
    "parse_device_map",
    "physical_name",
]

log = logging.getLogger("netdsl")

DeviceLike = str | torch.device


def default_devices(logical: tuple[str, ...]) -> dict[str, torch.device]:
    """Logical devices onto the CUDA devices there are, round-robin; else all on CPU."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n:
        return {d: torch.device("cuda", i % n) for i, d in enumerate(logical)}
    return {d: torch.device("cpu") for d in logical}


def parse_device_map(text: str) -> dict[str, str]:
    """``"gpu:0=cuda:0,gpu:1=cpu"`` -> ``{"gpu:0": "cuda:0", "gpu:1": "cpu"}`` (for the CLI).

    A bare device (``"cpu"``) maps every logical device onto it: ``{"*": "cpu"}``.
    """
    out: dict[str, str] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if "=" not in item:
            if len(text.split(",")) == 1:
                return {"*": item}
            raise UsageError(f"expected LOGICAL=DEVICE, got '{item}'", None,
                             "e.g. --devices gpu:0=cuda:0,gpu:1=cuda:1 (or just --devices cpu)")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def physical_name(device: torch.device) -> str:
    """A stable name for a torch device (``cuda`` means the current CUDA device)."""
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def available_devices() -> list[str]:
    """The devices this machine and this torch build can run on."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += [f"xpu:{i}" for i in range(xpu.device_count())]
    return names


def usable_device(value: DeviceLike) -> torch.device:
    """``value`` as a torch device this machine has, else a :class:`PlacementError` that
    says which devices there are."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise PlacementError(f"'{value}' is not a torch device name", None,
                             f"the devices here: {', '.join(available_devices())}") from None
    here = available_devices()
    kind = device.type
    if kind == "cpu" or (kind in ("cuda", "mps", "xpu") and (
            any(n.split(":")[0] == kind for n in here) if device.index is None
            else f"{kind}:{device.index}" in here)):
        return device
    why = {
        "cuda": f"this torch ({torch.__version__}) has no CUDA" if torch.version.cuda is None
        else "there is no such CUDA device here",
        "meta": "meta tensors hold shapes but no data: nothing can run there",
    }.get(kind, f"this torch ({torch.__version__}) cannot run on it here")
    raise PlacementError(f"device '{value}' is not available: {why}", None,
                         f"the devices here: {', '.join(here)}")


def _resolve_devices(net: Net, devices: Mapping[str, DeviceLike] | DeviceLike | None
                     ) -> dict[str, torch.device]:
    if devices is None:
        mapping = default_devices(net.devices)
        log.info("netdsl: placing %s", ", ".join(f"{k} -> {v}" for k, v in mapping.items()))
        return mapping
    if isinstance(devices, str | torch.device):
        return {d: usable_device(devices) for d in net.devices}
    if set(devices) == {"*"}:
        return {d: usable_device(devices["*"]) for d in net.devices}
    unknown = [d for d in devices if d not in net.devices]
    if unknown:
        from .diagnostics import did_you_mean

        raise PlacementError(
            f"'{unknown[0]}' is not a device of net '{net.name}' "
            f"(its devices: {', '.join(net.devices)})", None,
            did_you_mean(unknown[0], net.devices))
    missing = [d for d in net.devices if d not in devices]
    if missing:
        raise PlacementError(f"no torch device given for {', '.join(missing)}", None,
                             "map every logical device, e.g. gpu:0=cuda:0,gpu:1=cuda:1")
    return {d: usable_device(v) for d, v in devices.items()}


def _seed(net: Net, seed: int | None) -> int:
    """An explicit seed, else the spec's ``solver { random_seed }`` (Caffe's), else one
    drawn from torch's global generator (so ``torch.manual_seed`` makes it repeatable)."""
    if seed is not None:
        return int(seed)
    if net.solver.random_seed >= 0:
        return net.solver.random_seed
    return int(torch.randint(0, 2**62, (1,)).item())


def device_memory(device: torch.device) -> int | None:
    """The bytes there are for a net on ``device``: a CPU's physical memory, a CUDA
    device's free memory; None where it cannot be known (then nothing is checked)."""
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def check_memory(net: Net, shapes: ShapeTable, plan: Plan,
                 devices: Mapping[str, torch.device], dtype: torch.dtype | None) -> None:
    """Refuse, before allocating anything, a net whose parameters and one forward's
    activations (for the shapes' batch) do not fit the memory of the device they are
    placed on. A layer split across devices counts a share on each; a parameter shared
    by name counts once. Activations count each top once (an in-place top is its bottom)
    and all together, as training keeps them for the backward pass."""
    size = torch.empty((), dtype=dtype).element_size() if dtype in (
        torch.float64, torch.float32) else 4
    need: dict[torch.device, int] = {}
    largest: tuple[int, str, Shape, str] = (0, "", (), "")
    shared: set[str] = set()
    for lay, ls, lp in zip(net.layers, shapes.layers, plan.layers, strict=True):
        blobs = []
        for i, (b, s) in enumerate(ls.blobs.items()):
            share = lay.param_spec(i).name  # a blob shared by name is one tensor
            if share and share in shared:
                continue
            shared.add(share)
            blobs.append((f"{lay.name}.{b}", s))
        blobs += [(t, s) for t, s in zip(lay.tops, ls.tops, strict=True)
                  if t not in lay.bottoms]
        total = 0
        for name, shape in blobs:
            nbytes = count(shape) * size
            total += nbytes
            if nbytes > largest[0]:
                largest = (nbytes, name, shape, lay.name)
        for shard in lp.shards:
            dev = devices[shard.device] if plan.logical else torch.device(shard.device)
            need[dev] = need.get(dev, 0) + total // max(len(lp.shards), 1)
    for dev, nbytes in need.items():
        there = device_memory(dev)
        if there is None or nbytes <= there:
            continue
        big, name, shape, owner = largest
        what = "free memory" if dev.type == "cuda" else "memory"
        span = next((lay.span for lay in net.layers if lay.name == owner), None)
        raise PlacementError(
            f"the net needs {human_bytes(nbytes)} ({nbytes:,} bytes) on {dev}: parameters "
            f"and batch {shapes.batch}'s activations; {dev} has {human_bytes(there)} of {what}",
            span,
            f"the largest blob is '{name}' {list(shape)}: {human_bytes(big)}; "
            "a smaller batch or more devices")


def lower(net: Net, shapes: ShapeTable, plan: Plan, devices: Mapping[str, torch.device], *,
          seed: int | None = None, channels_last: bool = False, dtype: torch.dtype | None = None,
          torch_compile: bool | Mapping[str, Any] = False) -> CompiledNet:
    """Stage 10: the :class:`CompiledNet` of a plan.

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
    check_memory(net, shapes, plan, torch_devices, dtype)
    gen = fillers.generator(_seed(net, seed))
    program = lower_program(net, shapes, plan, torch_devices, gen, dtype in AUTOCAST_DTYPES)
    return CompiledNet(net, shapes, plan, devices, torch_devices, program,
                       channels_last=channels_last, dtype=dtype, torch_compile=torch_compile)


def compile(
    spec: str | Path | Net,
    phase: Phase | str = "train",
    devices: Mapping[str, DeviceLike] | DeviceLike | None = None,
    *,
    batch: int | None = None,
    inputs: Mapping[str, Shape] | None = None,
    seed: int | None = None,
    channels_last: bool = False,
    dtype: torch.dtype | None = None,
    torch_compile: bool | Mapping[str, Any] = False,
    cuda_graphs: bool = False,
    fuse: bool = True,
) -> CompiledNet:
    """Compile a spec into a ``torch.nn.Module``.

    Args:
      spec: a ``.net`` or Caffe ``.prototxt`` path, or an already built ``ir.Net`` (whose
        own phase is then used).
      phase: ``"train"`` or ``"test"``; a test net comes back in eval mode.
      devices: logical device -> torch device (``{"gpu:0": "cuda:0", "gpu:1": "cuda:1"}``),
        or one device for all. Default: the CUDA devices round-robin, else the CPU.
      batch, inputs: as for ``infer_shapes`` (only to size the modules; any batch runs).
      seed: seeds the one generator the blobs are filled from; default the spec's
        ``solver { random_seed }``, else a draw from torch's global generator.
      channels_last: 4-D inputs and weights in channels-last memory format.
      dtype: ``torch.bfloat16``/``torch.float16`` run under autocast (losses in float32);
        ``torch.float64``/``float32`` store the parameters in that dtype.
      torch_compile: run the forward pass through ``torch.compile``, as one graph (per
        set of requested outputs); a mapping gives ``torch.compile``'s keyword arguments
        (``{"backend": "aot_eager"}``, ``{"mode": "max-autotune"}``).
      cuda_graphs: replay the compiled graph as a CUDA graph (``torch.compile``'s
        ``reduce-overhead`` mode): less launch overhead for static shapes. Implies
        ``torch_compile``; needs the net on CUDA devices. An output of one call is
        overwritten by the next: clone what you keep.
      fuse: merge shards that land on one physical device (the default, and what you
        want for speed). ``False`` keeps one module per logical shard and moves data
        between them even on one device: for testing the sharded path on a CPU.
    """
    from .placement import plan as make_plan
    from .shapes import infer_shapes

    if isinstance(spec, Net):
        net = spec
    else:
        from . import load

        net = load(spec, phase)
    net.check()
    mapping = _resolve_devices(net, devices)
    if cuda_graphs:
        if any(d.type != "cuda" for d in mapping.values()):
            raise UsageError(
                "CUDA graphs need the net on CUDA devices; it is placed on "
                + ", ".join(sorted({str(d) for d in mapping.values()})),
                None, "drop --cuda-graphs, or place the net on GPUs (--devices)")
        options = dict(torch_compile) if isinstance(torch_compile, Mapping) else {}
        torch_compile = {**options, "mode": "reduce-overhead"}
    shapes = infer_shapes(net, batch, inputs)
    if fuse:
        the_plan = make_plan(net, shapes, {d: physical_name(t) for d, t in mapping.items()})
    else:
        the_plan = make_plan(net, shapes)
    return lower(net, shapes, the_plan, mapping, seed=seed, channels_last=channels_last,
                 dtype=dtype, torch_compile=torch_compile)
