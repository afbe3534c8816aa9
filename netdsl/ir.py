"""The IR: typed layers in execution order, with their blobs, phase and devices."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import syntax
from .diagnostics import Span
from .layers import REGISTRY
from .layers.base import LayerType
from .sections import PhaseData, RuntimeConfig, SolverConfig, solver_section


class Phase(enum.Enum):
    TRAIN = "train"
    TEST = "test"

    @staticmethod
    def parse(text: str) -> Phase:
        return Phase(text.lower())


@dataclass(frozen=True)
class ParamSpec:
    """Caffe's ParamSpec: per-blob learning-rate and decay multipliers, sharing by name."""

    name: str = ""
    lr_mult: float = 1.0
    decay_mult: float = 1.0


@dataclass(frozen=True)
class Layer:
    name: str
    type: str
    params: Any
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    devices: tuple[str, ...]
    param_specs: tuple[ParamSpec, ...]
    loss_weights: tuple[float, ...]
    span: Span
    field_spans: Mapping[str, Span] = field(default_factory=dict, compare=False, hash=False)
    notes: tuple[syntax.Note, ...] = field(default=(), compare=False)

    @property
    def kind(self) -> LayerType[Any]:
        return REGISTRY[self.type]

    def param_spec(self, index: int) -> ParamSpec:
        return self.param_specs[index] if index < len(self.param_specs) else ParamSpec()

    @property
    def in_place(self) -> bool:
        return bool(self.tops) and self.tops == self.bottoms[: len(self.tops)]


@dataclass(frozen=True)
class Net:
    """A phase-filtered, topologically ordered net. ``inputs`` are the data layers' tops."""

    name: str
    phase: Phase
    layers: tuple[Layer, ...]
    devices: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    path: str
    batch: int = 0  # batch size the spec implies for this phase (0: not said)
    #: the ``solver {}`` section, typed and validated (Caffe's defaults if there is none)
    solver: SolverConfig = field(default_factory=lambda: solver_section(None), compare=False)
    #: where each solver field was written (for later errors about it)
    solver_spans: Mapping[str, Span] = field(default_factory=dict, compare=False, hash=False)
    #: the ``data {}`` section for this phase, typed (None: no section; Caffe's data
    #: layers are read through ``sections.phase_data``)
    data: PhaseData | None = field(default=None, compare=False)
    #: the ``runtime {}`` section: precision, memory format, torch.compile
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig, compare=False)
    #: Caffe's NetState the layers were filtered with (besides the phase)
    level: int = field(default=0, compare=False)
    stages: tuple[str, ...] = field(default=(), compare=False)

    def layer(self, name: str) -> Layer:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(name)

    def check(self) -> None:
        """Assert the invariants later stages rely on (tests call this on every net)."""
        names = [lay.name for lay in self.layers]
        assert len(names) == len(set(names)), "layer names are unique"
        produced: set[str] = set()
        for lay in self.layers:
            assert lay.type in REGISTRY, lay.type
            for b in lay.bottoms:
                assert b in produced, f"{lay.name}: bottom {b} produced earlier"
            produced.update(lay.tops)
            assert lay.devices and set(lay.devices) <= set(self.devices), lay.name
        for i in self.inputs:
            assert i in produced
        for o in self.outputs:
            assert o in produced
