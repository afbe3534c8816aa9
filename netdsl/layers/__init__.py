"""The layer registry: one module per layer type, each registering itself.

``REGISTRY`` maps every accepted type name (V2 name, V1 enum, aliases) to the type's
singleton. Adding a layer type means adding one module here (and its test file).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, TypeVar

from ..diagnostics import Span, SpecError, did_you_mean
from .base import LayerType

REGISTRY: dict[str, LayerType[Any]] = {}
TYPES: dict[str, LayerType[Any]] = {}  # canonical name -> type, in registration order

#: The type that the language's ``input { ... }`` blocks and Caffe's ``input:`` /
#: ``input_dim:`` / ``input_shape`` fields become.
INPUT_TYPE = "Input"

L = TypeVar("L", bound=type[LayerType[Any]])


def register(cls: L) -> L:
    """Class decorator: register a LayerType subclass under its name and Caffe names."""
    inst = cls()
    if not cls.name:
        cls.name = cls.__name__
    TYPES[cls.name] = inst
    for n in (cls.name, *cls.caffe_names):
        if n in REGISTRY and REGISTRY[n] is not inst:
            raise RuntimeError(f"layer type name {n} registered twice")
        REGISTRY[n] = inst
    return cls


def lookup(type_name: str, span: Span) -> LayerType[Any]:
    """The type called ``type_name``; an unknown name is an error listing near matches."""
    t = REGISTRY.get(type_name)
    if t is not None:
        return t
    hint = did_you_mean(type_name, TYPES) or did_you_mean(type_name, REGISTRY)
    if hint is None:
        hint = "known types: " + ", ".join(sorted(TYPES))
    raise SpecError(f"unknown layer type '{type_name}'", span, hint)


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "base" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_load_all()
