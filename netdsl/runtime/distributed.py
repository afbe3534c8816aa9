"""Data parallelism across processes and machines, with PyTorch's own engine.

Each process holds a whole replica of the net, placed on its own devices as the spec's
``devices`` say (so a two-device AlexNet is model-parallel inside each process and
data-parallel across them), and trains on its share of every global batch;
``DistributedDataParallel`` averages the gradients (as Caffe's multi-GPU training did:
it sums them and divides by the number of solvers), and Caffe's update rule then runs
unchanged in every process. ``batch_size`` is per process: the global batch is
``batch_size * world``.

A process learns that it is one of several from torch's elastic launcher (``torchrun``,
or ``netdsl train --nproc N``, which starts it): the ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and rendezvous variables. The backend is NCCL on CUDA devices and gloo on
the CPU. Local devices follow the local rank: with 4 GPUs and ``devices: [gpu:0,
gpu:1]``, local rank 0 uses cuda:0 and cuda:1, local rank 1 cuda:2 and cuda:3.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from netdsl.diagnostics import NetdslError, UsageError

__all__ = ["PeerFailed", "World", "current", "launch", "leave", "local_devices", "peer_failed",
           "without_launch_flags"]


class PeerFailed(NetdslError):
    """This process stopped because another process of the run failed."""


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run."""

    rank: int
    size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        """Whether this process reports, snapshots and writes TensorBoard events."""
        return self.rank == 0

    def all_sum(self, values: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The element-wise sum over the processes (a float64 tensor on the CPU)."""
        t = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        device = torch.device("cuda", torch.cuda.current_device()) \
            if self.backend == "nccl" else torch.device("cpu")
        t = t.to(device)
        dist.all_reduce(t)
        return t.cpu()

    def any(self, flag: bool) -> bool:
        """Whether any process says so (every process gets the same answer)."""
        return bool(self.all_sum([1.0 if flag else 0.0])[0] > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


_WORLD: World | None = None


def current(cuda: bool | None = None) -> World | None:
    """This process's :class:`World`, joining the process group on the first call; ``None``
    when it was not started by a launcher (or is the only process)."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local % max(1, torch.cuda.device_count()))
    if not dist.is_initialized():
        dist.init_process_group(backend)
    _WORLD = World(dist.get_rank(), dist.get_world_size(), local, backend)
    return _WORLD


def leave() -> None:
    """Leave the process group (its threads stop before the interpreter does, which
    otherwise can abort a process at exit); harmless after a peer died."""
    global _WORLD
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001  # a group a dead peer broke: nothing to release
            pass
    _WORLD = None


def local_devices(logical: Sequence[str], local_rank: int) -> dict[str, torch.device]:
    """This process's devices: ``len(logical)`` consecutive CUDA devices from ``local_rank
    * len(logical)`` (wrapping round the GPUs there are), else the CPU."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not n:
        return {d: torch.device("cpu") for d in logical}
    k = len(logical)
    return {d: torch.device("cuda", (local_rank * k + j) % n) for j, d in enumerate(logical)}


def launch(argv: Sequence[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
           endpoint: str | None = None, run_id: str = "netdsl") -> int:
    """Start ``nproc`` processes on this machine (of ``nnodes`` machines), each running
    ``python -m netdsl ARGV``, through torch's elastic launcher; returns the exit status
    (a failing process ends every process)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1 or nnodes < 1 or not 0 <= node_rank < nnodes:
        raise UsageError(f"--nproc {nproc}, --nnodes {nnodes}, --node-rank {node_rank} do not "
                         "make a run", None, "--nproc >= 1, 0 <= --node-rank < --nnodes")
    if nnodes > 1 and not endpoint:
        raise UsageError("several machines need a rendezvous endpoint", None,
                         "--rdzv-endpoint HOST:PORT, the same on every machine")
    config = LaunchConfig(
        min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc, run_id=run_id,
        rdzv_backend="c10d" if endpoint else "static",
        rdzv_endpoint=endpoint or f"127.0.0.1:{_free_port()}",
        rdzv_configs={"rank": node_rank} if not endpoint else {},
        max_restarts=0, monitor_interval=0.2,
    )
    if not endpoint:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    # torch's default of one thread per core in each process oversubscribes the CPU
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    for name in list(logging.root.manager.loggerDict):  # each process speaks for itself
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "netdsl", *argv)
    except ChildFailedError as e:  # each process printed its own message
        codes = [f.exitcode for f in e.failures.values()]
        return next((c for c in codes if c == 130), next((c for c in codes if c > 0), 1))
    except SignalException as e:  # the processes got it too, and stopped (or were killed)
        return 130 if e.sigval == signal.SIGINT else 128 + int(e.sigval)
    return 0


LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")


def without_launch_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` without the launcher's own flags (``--nproc 2`` or ``--nproc=2``...): what
    each process runs."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in LAUNCH_FLAGS:
            skip = True
        elif not a.startswith(tuple(f + "=" for f in LAUNCH_FLAGS)):
            out.append(a)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def peer_failed(error: BaseException) -> bool:
    """Whether ``error`` is a collective operation failing because another process died."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("closed by peer", "reset by peer", "Broken pipe", "NCCL error"))


def in_process(error: NetdslError, world: World) -> NetdslError:
    """``error`` saying which process met it."""
    error.message = f"process {world.rank} of {world.size}: {error.message}"
    return error


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the processes, differentiable (its gradient is summed back)."""
    from torch.distributed.nn.functional import all_reduce

    out: torch.Tensor = all_reduce(t)  # type: ignore[no-untyped-call]  # unannotated in torch
    return out


def wrap(net: torch.nn.Module, world: World) -> torch.nn.Module:
    """The net in ``DistributedDataParallel``: gradients averaged over the processes.
    Buffers (BatchNorm's statistics) stay each process's own (torch's replacement flag,
    ``forward_sync_buffers``, still syncs them once at the start, hence the old one)."""
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated",
                                FutureWarning)
        return DistributedDataParallel(net, broadcast_buffers=False)


def describe(world: World, devices: Mapping[str, torch.device], batch: int) -> str:
    """The log line of one process."""
    placed = ", ".join(f"{k} -> {v}" for k, v in devices.items())
    return (f"netdsl: process {world.rank} of {world.size} ({world.backend}), "
            f"local {world.local_rank}: {placed}; global batch {batch * world.size} "
            f"({batch} per process)")
