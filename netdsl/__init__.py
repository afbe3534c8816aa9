"""netdsl: a Caffe-style declarative network compiler for PyTorch.

The pipeline, one module per stage: ``parse`` -> ``caffe_compat`` -> ``resolve`` ->
``build`` -> ``shapes`` -> ``placement`` -> ``lower``. ``load`` runs the first four.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ir
from .ir import Phase
from .layers.base import Role

if TYPE_CHECKING:
    from .api import Net
    from .runtime.predict import Transformer, classify
    from .runtime.train import Trainer
    from .syntax import Spec

__all__ = ["CompiledNet", "Net", "Phase", "Role", "Trainer", "Training", "Transformer", "classify",
           "compile", "compile_net", "load", "load_spec", "load_training",
           "__version__"]
__version__ = "0.1.0"


def load_spec(path: str | Path, overrides: Mapping[str, str] | None = None,
              plugins: Iterable[str] = (), *, stages: Iterable[str] | None = None,
              level: int | None = None) -> Spec:
    """Parse, upgrade Caffe forms and resolve a spec file -> ``syntax.Spec``.

    ``plugins`` names modules registering more layer types (as ``--plugin`` does); those
    the spec and the files it imports name (``plugins: [...]``) are loaded too.
    ``stages`` and ``level`` set the spec's ``state {}`` (as ``--stage``/``--level``).
    """
    import json

    from .plugins import load_plugins, load_spec_plugins, read_spec_file, with_plugins
    from .resolve import default_loader, resolve

    load_plugins(plugins)
    overrides = dict(overrides or {})
    if stages is not None:
        overrides["state.stage"] = json.dumps(list(stages))
    if level is not None:
        overrides["state.level"] = str(int(level))
    spec = resolve(read_spec_file(path), with_plugins(default_loader), overrides)
    load_spec_plugins(spec.items)
    return spec


def load(path: str | Path, phase: Phase | str = Phase.TRAIN,
         overrides: Mapping[str, str] | None = None, plugins: Iterable[str] = (), *,
         stages: Iterable[str] | None = None, level: int | None = None) -> ir.Net:
    """A spec file -> the phase's ``ir.Net`` (no torch involved); ``plugins`` as for
    :func:`load_spec`; ``stages`` and ``level`` are Caffe's NetState (default: the spec's
    ``state {}``, else level 0 and no stage)."""
    from .build import build

    stage_list = None if stages is None else list(stages)
    return build(load_spec(path, overrides, plugins), phase, level, stage_list)


def __getattr__(name: str) -> Any:
    """Lazy exports: ``compile``, ``CompiledNet``, ``Net`` (pycaffe's ``caffe.Net``; the
    IR's class is ``netdsl.ir.Net``), ``Trainer``, ``Transformer`` and ``classify``
    import torch, the rest does not."""
    if name == "Net":
        from . import api

        globals()["Net"] = api.Net
        return api.Net
    if name == "Trainer":
        from .runtime import train

        globals()["Trainer"] = train.Trainer
        return train.Trainer
    if name in ("Transformer", "classify"):
        from .runtime import predict

        globals()["Transformer"] = predict.Transformer
        globals()["classify"] = predict.classify
        return globals()[name]
    if name in ("load_training", "Training"):
        from . import training

        globals()["load_training"] = training.load_training
        globals()["Training"] = training.Training
        return globals()[name]
    if name in ("compile", "compile_net", "CompiledNet"):
        from . import compiler

        globals()["compile"] = globals()["compile_net"] = compiler.compile
        globals()["CompiledNet"] = compiler.CompiledNet
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
