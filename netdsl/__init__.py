"""netdsl: a Caffe-style declarative network compiler for PyTorch.

The pipeline, one module per stage: ``parse`` -> ``caffe_compat`` -> ``resolve`` ->
``build`` -> ``shapes`` -> ``placement`` -> ``lower``. ``load`` runs the first four.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .ir import Net, Phase
from .layers.base import Role

if TYPE_CHECKING:
    from .syntax import Spec

__all__ = ["CompiledNet", "Net", "Phase", "Role", "Training", "compile", "compile_net", "load",
           "load_spec", "load_training", "__version__"]
__version__ = "0.1.0"


def load_spec(path: str | Path, overrides: Mapping[str, str] | None = None,
              plugins: Iterable[str] = ()) -> Spec:
    """Parse, upgrade Caffe forms and resolve a spec file -> ``syntax.Spec``.

    ``plugins`` names modules registering more layer types (as ``--plugin`` does); those
    the spec and the files it imports name (``plugins: [...]``) are loaded too.
    """
    from .plugins import load_plugins, load_spec_plugins, read_spec_file, with_plugins
    from .resolve import default_loader, resolve

    load_plugins(plugins)
    spec = resolve(read_spec_file(path), with_plugins(default_loader), overrides or {})
    load_spec_plugins(spec.items)
    return spec


def load(path: str | Path, phase: Phase | str = Phase.TRAIN,
         overrides: Mapping[str, str] | None = None, plugins: Iterable[str] = ()) -> Net:
    """A spec file -> the phase's ``ir.Net`` (no torch involved); ``plugins`` as for
    :func:`load_spec`."""
    from .build import build

    return build(load_spec(path, overrides, plugins), phase)


def __getattr__(name: str) -> Any:
    """Lazy exports: ``compile`` and ``CompiledNet`` import torch, the rest does not."""
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
