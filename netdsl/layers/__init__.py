"""The layer registry: one module per layer type, each registering itself.

``REGISTRY`` maps every accepted type name (V2 name, V1 enum, aliases) to the type's
singleton. Adding a layer type means adding one module here (and its test file).

Plugins register types from outside netdsl the same way (``@register`` on a
``LayerType`` subclass; :mod:`netdsl.plugins` imports them). A name already taken is an
error naming both classes.
"""

from __future__ import annotations

import dataclasses
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


class LayerTypeClash(RuntimeError):
    """A layer type name (or Caffe spelling) that another registered type already has."""


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: L) -> L:
    """Class decorator: register a LayerType subclass under its name and Caffe names.

    A name some other type already has raises :class:`LayerTypeClash` naming both; the
    same class defined again (its module run a second time) replaces the first.
    """
    if not (isinstance(cls, type) and issubclass(cls, LayerType)):
        raise TypeError(f"@register is for LayerType subclasses, not {cls!r}")
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{_where(cls)}.Params must be a dataclass, not {cls.Params!r}")
    if not cls.__dict__.get("name"):
        cls.name = cls.__name__
    names = (cls.name, *cls.caffe_names)
    for n in names:
        old = REGISTRY.get(n)
        if old is not None and _where(type(old)) != _where(cls):
            raise LayerTypeClash(
                f"layer type name '{n}' of {_where(cls)} is already registered by "
                f"{_where(type(old))}")
    inst = cls()
    for n in names:
        old = REGISTRY.get(n)
        if old is not None:  # the same class again: drop the old one's names
            TYPES.pop(old.name, None)
            for k in [k for k, v in REGISTRY.items() if v is old]:
                del REGISTRY[k]
    TYPES[cls.name] = inst
    for n in names:
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
