"""The ``runtime {}`` section, typed: how a run uses the hardware, not what it computes.

``precision`` (fp32, bf16 or fp16: autocast, with dynamic loss scaling for fp16; fp64:
parameters and activations in double),
``channels_last``, ``compile`` (``torch.compile``, the whole graph) and ``cuda_graphs``
(replayed CUDA graphs). The command line's ``--precision``, ``--channels-last``,
``--compile``, ``--cuda-graphs`` and ``--sync-batchnorm`` override them; the last
(``sync_batchnorm``) makes a data-parallel run's BatchNorm layers normalise with the
statistics of the global batch rather than each process's share. None of them changes the net or the
solver; bf16 and fp16 change the arithmetic's precision, so a loss will differ in its
later digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import syntax as s
from ..fields import FieldError, convert

__all__ = ["PRECISIONS", "RuntimeConfig", "runtime_section"]

#: The precisions a run may use.
PRECISIONS = ("fp32", "bf16", "fp16", "fp64")


def _doc(text: str) -> dict[str, Any]:
    return {"doc": text}


@dataclass(frozen=True)
class RuntimeConfig:
    """How a run uses the hardware (``netdsl train``, ``test`` and ``time``)."""

    precision: str = field(default="fp32", metadata=_doc(
        "fp32, bf16 or fp16 (autocast; fp16 with dynamic loss scaling), or fp64 (the net "
        "in double, as Caffe's Net<double>: for checks, not speed)"))
    channels_last: bool = field(default=False, metadata=_doc(
        "4-D activations and weights in channels-last memory format"))
    compile: bool = field(default=False, metadata=_doc(
        "run the net through torch.compile, as one graph"))
    cuda_graphs: bool = field(default=False, metadata=_doc(
        "replay the compiled net as CUDA graphs (implies compile; CUDA only)"))
    sync_batchnorm: bool = field(default=False, metadata=_doc(
        "with several processes, batch statistics over the global batch (SyncBatchNorm)"))

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise FieldError(f"precision must be {', '.join(PRECISIONS)}; got '{self.precision}'",
                             "precision")


def runtime_section(block: s.Block | None) -> RuntimeConfig:
    """The spec's ``runtime {}`` section (defaults without one)."""
    return convert(RuntimeConfig, block.items if block is not None else (), "runtime")
