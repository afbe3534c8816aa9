"""The front door for training: a spec (or a Caffe solver file) -> both phases' nets and
the solver, typed and checked, before any torch import.

``load_training("specs/alexnet.net")`` reads a ``.net`` spec or a Caffe
``train_val.prototxt`` once and builds its TRAIN and TEST nets; a Caffe
``solver.prototxt`` names its net with ``net:`` (both phases) or ``train_net:`` and
``test_net:`` (one file each), relative to the current folder as Caffe resolves it, else
to the solver file's folder. ``--set solver.*`` overrides apply to the solver, the other
overrides to the net. The runtime starts here and compiles the two nets itself.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import syntax as s
from .build import NetState, _State, build, net_state
from .diagnostics import DataError, Span
from .fields import convert, field_spans
from .ir import Net
from .plugins import load_plugins, read_spec_file, with_plugins
from .resolve import default_loader, resolve
from .sections import SolverConfig, solver_section

__all__ = ["Training", "load_training", "solver_state"]


@dataclass(frozen=True)
class Training:
    """What a training run is made of: the two phases' nets and the solver."""

    train_net: Net
    test_net: Net
    solver: SolverConfig
    path: str  # the file given (a spec, or a Caffe solver file)

    @property
    def name(self) -> str:
        return self.train_net.name or Path(self.path).stem


def load_training(spec: str | os.PathLike[str],
                  overrides: Mapping[str, str] | None = None,
                  plugins: Iterable[str] = ()) -> Training:
    """Load everything a training run needs from ``spec`` (see the module docstring);
    ``plugins`` names modules registering more layer types (``--plugin``), besides those
    the spec names itself."""
    load_plugins(plugins)
    overrides = dict(overrides or {})
    file = read_spec_file(spec)
    loader = with_plugins(default_loader)
    block = _solver_file_block(file)
    if block is None:
        resolved = resolve(file, loader, overrides)
        train, test = build(resolved, "train"), build(resolved, "test")
        return Training(train, test, train.solver, os.fspath(spec))
    solver_overrides = {k: v for k, v in overrides.items() if k.startswith("solver.")}
    solver_spec = resolve(file, loader, solver_overrides)
    solver_value = next(f.value for f in solver_spec.items if f.key == "solver")
    assert isinstance(solver_value, s.Block)
    block = solver_value
    states = ("train_state", "test_state")  # the nets' NetState: solver_state reads them
    solver = solver_section(dataclasses.replace(block, items=tuple(
        i for i in block.items if not (isinstance(i, s.Field) and i.key in states))))
    spans = field_spans(block.items)
    net_overrides = {k: v for k, v in overrides.items() if not k.startswith("solver.")}
    nets = []
    specs: dict[Path, s.Spec] = {}
    for phase, keys in (("train", ("net", "train_net")), ("test", ("net", "test_net"))):
        key = next((k for k in keys if block.scalar(k)), None)
        if key is None:  # a train_net without a test_net: the TEST phase of the same file
            key = "train_net"
        path = _net_file(block, key, Path(os.fspath(spec)).parent)
        if path not in specs:
            specs[path] = resolve(read_spec_file(path), loader, net_overrides)
        level, stages = solver_state(block, phase, net_state(specs[path]))
        net = build(specs[path], phase, level, stages)
        nets.append(dataclasses.replace(net, solver=solver, solver_spans=spans))
    return Training(nets[0], nets[1], solver, os.fspath(spec))


def solver_state(solver: s.Block, phase: str, written: NetState
                 ) -> tuple[int | None, list[str] | None]:
    """Caffe's Solver: the net's own state, then the solver's ``train_state`` (or its first
    ``test_state``) merged over it: its stages added, its level set if it gives one.
    ``(None, None)`` where the solver says nothing for ``phase``."""
    f = solver.first("train_state" if phase == "train" else "test_state")
    if f is None or not isinstance(f.value, s.Block):
        return None, None
    st = convert(_State, f.value.items, f"'{f.key}'")
    given = {x.key for x in f.value.items if isinstance(x, s.Field)}
    level = int(st.level) if "level" in given else None
    return level, [*written.stages, *(str(x) for x in st.stage)]


def _net_file(block: s.Block, key: str, here: Path) -> Path:
    named = str(block.scalar(key))
    candidates = [Path(named), here / named, here / Path(named).name]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        f = block.first(key)
        raise DataError(
            f"the solver's {key} '{named}' was not found",
            f.span if f is not None else Span(str(here)),
            hint="Caffe resolves it from the current folder; run from there, or pass the net "
            "file itself",
        )
    return found


def _solver_file_block(file: s.File) -> s.Block | None:
    """The solver block of a Caffe solver file that names its net, else None."""
    fields_ = [i for i in file.items if isinstance(i, s.Field)]
    if len(fields_) != 1 or len(file.items) != 1 or fields_[0].key != "solver":
        return None
    block = fields_[0].value
    if not isinstance(block, s.Block):
        return None
    if not any(block.scalar(k) for k in ("net", "train_net", "test_net")):
        return None
    return block
