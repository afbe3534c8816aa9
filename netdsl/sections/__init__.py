"""The spec's sections, typed at the build stage: ``solver {}`` as :class:`SolverConfig`,
``data {}`` as :class:`DataConfig`, ``runtime {}`` as :class:`RuntimeConfig`. ``ir.Net``
carries them (``net.solver``, ``net.data``, ``net.runtime``), so a bad field is a
``file:line:col`` diagnostic from ``netdsl shapes`` as from ``netdsl train``, and the
runtime reads typed values, never syntax."""

from __future__ import annotations

from .data import SOURCE_KINDS, DataConfig, PhaseData, data_section, missing_data, phase_data
from .runtime import PRECISIONS, RuntimeConfig, runtime_section
from .solver import (
    DEFAULT_EPOCHS,
    LR_POLICIES,
    SolverConfig,
    SolverType,
    resolve_max_iter,
    solver_section,
)

__all__ = [
    "DEFAULT_EPOCHS",
    "LR_POLICIES",
    "PRECISIONS",
    "SOURCE_KINDS",
    "DataConfig",
    "PhaseData",
    "RuntimeConfig",
    "SolverConfig",
    "SolverType",
    "data_section",
    "missing_data",
    "phase_data",
    "resolve_max_iter",
    "runtime_section",
    "solver_section",
]
