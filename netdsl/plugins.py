"""Plugins: layer types from the user's own modules, on an equal footing with netdsl's.

A plugin is a Python module (on ``sys.path``: set ``PYTHONPATH``) that registers layer
types exactly as netdsl's own files in ``netdsl/layers/`` do: a frozen ``Params``
dataclass whose fields carry a one-line ``doc``, a shape rule in the layer's own
arithmetic (no torch: ``netdsl shapes`` does not import it), and a torch lowering (import
torch inside ``lower``). Everything this module exports is what such a file needs::

    # mypkg/layers.py
    from dataclasses import dataclass, field

    from netdsl.plugins import Call, Kernel, LayerType, Shape, ShapeContext, doc, register

    @dataclass(frozen=True)
    class HardswishParams:
        scale: float = field(default=1.0, metadata=doc("multiply the output by this"))

    def hardswish(x, scale=1.0):                 # a plain function of tensors
        import torch.nn.functional as F
        return F.hardswish(x) * scale

    @register
    class Hardswish(LayerType[HardswishParams]):
        \"""x * relu6(x + 3) / 6, times scale (the first line is its reference entry).\"""
        Params = HardswishParams

        def shape(self, p, bottoms: tuple[Shape, ...], ctx: ShapeContext):
            if len(bottoms[0]) < 2:
                raise ctx.error("needs a batch and channels")   # a diagnostic, at the layer
            return (bottoms[0],)

        def lower(self, p, bottoms, tops) -> Kernel:
            return Call(hardswish, {"scale": p.scale})

A spec names the plugins it needs at its top, ``plugins: ["mypkg.layers"]``; every
command also takes ``--plugin mypkg.layers`` (repeatable), and the Python API takes
``plugins=[...]`` (``netdsl.load``, ``netdsl.load_spec``, ``netdsl.load_training``). The
types are then layer types like any other: fields checked with "unknown field" and "did
you mean", Caffe's ``<type>_param`` block read, shapes, placement, lowering, and an entry
in :func:`netdsl.reference.layer_reference`. Each module is imported once; a module that
fails to import is a diagnostic at the spec line (or flag) naming it, and a type name
that is already taken is an error naming both classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import ModuleType

from . import syntax as s
from .caffe_compat import upgrade
from .diagnostics import NetdslError, Span, SpecError, raise_all
from .fields import doc
from .layers import LayerTypeClash, register
from .layers.base import (
    Alias,
    Arity,
    Call,
    Filler,
    Follow,
    Kernel,
    LayerType,
    NoParams,
    Role,
    Shape,
    ShapeContext,
    Split,
)
from .parse import parse_file
from .resolve import Loader
from .usercode import UserCodeError, import_user_module

__all__ = ["PLUGINS", "Alias", "Arity", "Call", "Filler", "Follow", "Kernel", "LayerType",
           "NoParams", "Role", "Shape", "ShapeContext", "Split", "doc", "load_plugin",
           "load_plugins", "load_spec_plugins", "read_spec_file", "register", "with_plugins"]

#: The plugin modules loaded so far, by name.
PLUGINS: dict[str, ModuleType] = {}

#: The top-level field of a spec that names its plugins.
FIELD = "plugins"


def load_plugin(module: str, span: Span | None = None) -> ModuleType:
    """Import the plugin ``module`` once, registering its layer types. Any failure is a
    SpecError at ``span`` (the spec's ``plugins`` entry, or the ``--plugin`` flag)."""
    done = PLUGINS.get(module)
    if done is not None:
        return done
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise SpecError(f"'{module}' is not a Python module name", span,
                        'name a module as Python imports it, e.g. plugins: ["mypkg.layers"]')
    try:
        mod = import_user_module(module, "plugin module", passthrough=(LayerTypeClash,))
    except LayerTypeClash as e:
        raise SpecError(f"plugin module '{module}': {e}", span,
                        "rename one of the types (its name, or its caffe_names)") from e
    except UserCodeError as e:
        raise SpecError(e.message, span, e.hint, e.notes) from e
    PLUGINS[module] = mod
    return mod


def load_plugins(modules: Iterable[str], span: Span | None = None) -> None:
    """:func:`load_plugin` for each of ``modules``, all reported at ``span``."""
    for m in modules:
        load_plugin(m, span)


def load_spec_plugins(items: Iterable[s.Item], literal_only: bool = False) -> None:
    """Load the plugins a spec's top-level ``plugins`` fields name (a string or a list
    of strings each), each failure reported at its entry. ``literal_only``: the file is
    not resolved yet; skip entries that are still expressions."""
    errors: list[NetdslError] = []
    for f in items:
        if not isinstance(f, s.Field) or f.key != FIELD:
            continue
        values = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
        for v in values:
            if literal_only and (not isinstance(v, s.Scalar | s.Block)
                                 or "${" in str(getattr(v, "value", ""))):
                continue  # an expression: loaded once resolved
            if not isinstance(v, s.Scalar) or v.kind not in ("string", "word"):
                errors.append(SpecError("a plugin must be a module name (a string)", v.span,
                                        'e.g. plugins: ["mypkg.layers"]'))
                continue
            try:
                load_plugin(str(v.value), v.span)
            except NetdslError as e:
                errors.append(e)
    raise_all(errors)


def read_spec_file(path: str | os.PathLike[str]) -> s.File:
    """Parse a spec file, load the plugins it names (so that Caffe's forms are upgraded
    knowing their types), and upgrade those forms."""
    file = parse_file(path)
    load_spec_plugins(file.items, literal_only=True)
    return upgrade(file)


def with_plugins(load: Loader) -> Loader:
    """A loader for ``resolve`` that also loads the plugins each imported file names:
    plugins add up over the imports (an importer's own ``plugins`` field replaces the
    imported one's, as every field does, but the types stay registered)."""

    def loader(path: str, span: Span) -> s.File:
        file = load(path, span)
        load_spec_plugins(file.items, literal_only=True)
        return file

    return loader
