"""The spec's ``solver {}`` and ``data {}`` sections (or Caffe's data layers) as typed configs.

``solver_config(net)`` converts the solver section into a :class:`SolverConfig` and
validates it; ``data_config(net, phase)`` gives one phase's :class:`DataConfig`, from

* the spec's ``data { ... }`` section: common fields, then the phase's ``train { ... }`` or
  ``test { ... }`` sub-block, whose fields replace the common ones; or
* Caffe's data layers, for a ``train_val.prototxt``: a ``Data`` layer (an LMDB database,
  ``batch_size``, ``transform_param``) or an ``ImageData`` layer (a list file), mapped to
  the same config.

Both go through :func:`netdsl.fields.convert`, so an unknown field or a typo is a
``file:line:col`` error with a "did you mean" hint.

Paths of the data are relative to the current directory, as in Caffe. ``--data PATH``
(``data_path``) replaces the spec's path: for a spec path whose last part exists under
``PATH`` (``--data /datasets/mnist`` for ``examples/mnist/mnist_train_lmdb``) that file
is used, else ``PATH`` itself. An image folder with ``train/`` and ``val/`` (or ``test/``)
sub-folders is used per phase, as ``specs/alexnet.net`` lays ImageNet out. Data that is not
where the config says is a :class:`DataError` naming the path and how to point elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from netdsl import syntax as s
from netdsl.diagnostics import DataError, Span, SpecError, did_you_mean
from netdsl.fields import convert, field_spans
from netdsl.ir import Layer, Net
from netdsl.layers import INPUT_TYPE
from netdsl.layers.base import FieldError
from netdsl.runtime.data import SOURCE_KINDS, DataConfig
from netdsl.runtime.solver import SolverConfig

__all__ = [
    "DATA_HINT",
    "DEFAULT_EPOCHS",
    "data_config",
    "data_span",
    "has_data",
    "solver_config",
]

#: Epochs trained when the solver says neither ``max_iter`` nor ``max_epochs``.
DEFAULT_EPOCHS = 1.0

#: How to point netdsl at data that is somewhere else.
DATA_HINT = "point netdsl at it with --data PATH, or --set data.path=PATH"

_PATH_KINDS = {"folder": "image folder", "list": "list file", "lmdb": "LMDB database"}
_PHASE_FOLDERS = {"train": ("train",), "test": ("val", "test", "validation")}


# ------------------------------------------------------------------------------- solver


def _from_set(span: Span | None) -> bool:
    """Whether a field was written by ``--set`` (the resolver gives it a ``<--set ...>`` path)."""
    return span is not None and span.path.startswith("<--set")


def solver_config(net: Net, overrides: Mapping[str, Any] | None = None) -> SolverConfig:
    """The net's ``solver {}`` section as a validated :class:`SolverConfig`.

    A spec without a solver section trains with Caffe's defaults (SGD, ``base_lr`` 0.01,
    ``lr_policy`` fixed, no momentum or decay). Caffe has no default length; netdsl trains
    :data:`DEFAULT_EPOCHS` epoch when neither ``max_iter`` nor ``max_epochs`` is given.
    ``--set solver.max_iter=N`` replaces a ``max_epochs`` written in the spec (and the other
    way round). ``overrides`` are typed values replacing fields after conversion (the
    CLI's or a test's), with the same precedence.
    """
    block = net.sections.get("solver")
    items: tuple[s.Item, ...] = block.items if block is not None else ()
    spans = field_spans(items)
    cfg = convert(SolverConfig, items, "solver")
    if cfg.max_iter > 0 and cfg.max_epochs > 0:
        if _from_set(spans.get("max_iter")) and not _from_set(spans.get("max_epochs")):
            cfg = replace(cfg, max_epochs=0.0)
        elif _from_set(spans.get("max_epochs")) and not _from_set(spans.get("max_iter")):
            cfg = replace(cfg, max_iter=0)
    if overrides:
        names = {f.name for f in fields(SolverConfig)}
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise SpecError(
                f"unknown solver field '{unknown[0]}'", None, did_you_mean(unknown[0], names)
            )
        values = dict(overrides)
        if values.get("max_iter") and "max_epochs" not in values:
            values["max_epochs"] = 0.0
        if values.get("max_epochs") and "max_iter" not in values:
            values["max_iter"] = 0
        try:
            cfg = replace(cfg, **values)
        except (TypeError, ValueError) as e:
            raise SpecError(f"invalid solver override: {e}") from None
    if cfg.max_iter <= 0 and cfg.max_epochs <= 0:
        cfg = replace(cfg, max_epochs=DEFAULT_EPOCHS)
    cfg.validate(spans)
    return cfg


# --------------------------------------------------------------------------------- data


def has_data(net: Net) -> bool:
    """Whether the phase's net says where its data comes from (a section or a data layer)."""
    return "data" in net.sections or _data_layer(net) is not None


def data_span(net: Net) -> Span | None:
    """Where the phase's data is configured: the data section, else its data layer."""
    block = net.sections.get("data")
    if block is not None:
        return block.span
    layer = _data_layer(net)
    return layer.span if layer is not None else None


def _data_layer(net: Net) -> Layer | None:
    for lay in net.layers:
        if lay.kind.has_data_source:
            return lay
    return None


def data_config(net: Net, phase: str, data_path: str | None = None) -> DataConfig:
    """One phase's :class:`DataConfig` from the data section, else the net's data layer.

    ``net`` is the phase's net (``netdsl.load(spec, phase)``): its data layers are the
    phase's. ``data_path`` is ``--data``. Raises :class:`DataError` when the net says
    nothing about its data or the data is not where the config points.
    """
    phase = phase.lower()
    if phase not in ("train", "test"):
        raise ValueError(f"phase must be 'train' or 'test', not {phase!r}")
    block = net.sections.get("data")
    if block is not None:
        cfg, path_span = _from_section(block, phase)
        origin = "section"
    else:
        layer = _data_layer(net)
        if layer is None:
            _no_data(net, phase)
        cfg, path_span = _from_layer(layer, phase)  # type: ignore[arg-type]
        origin = "layer"
    if data_path is not None:
        cfg = replace(cfg, path=_apply_data_path(cfg.path, data_path))
        path_span = None
    return _locate(cfg, phase, path_span, origin, from_flag=data_path is not None)


def _no_data(net: Net, phase: str) -> None:
    other = [lay for lay in net.layers
             if lay.kind.is_data and lay.kind.name != INPUT_TYPE]
    if other:
        lay = other[0]
        raise DataError(
            f"netdsl cannot read the data of {lay.type} layer '{lay.name}'",
            lay.span,
            hint=f"add a data {{ ... }} section (sources: {', '.join(SOURCE_KINDS)})",
        )
    raise DataError(
        f"net '{net.name or net.path}' says nothing about its {phase} data",
        Span(net.path),
        hint='add a data section, e.g. data { source: "folder"  path: "images"  '
        "batch_size: 64 }, or for a quick try data { source: \"digits\" } "
        f"(sources: {', '.join(SOURCE_KINDS)})",
    )


def _from_section(block: s.Block, phase: str) -> tuple[DataConfig, Span | None]:
    """Common fields overridden by the phase's sub-block (lists are replaced, not joined)."""
    phase_items: tuple[s.Item, ...] = ()
    for f in block.items:
        if isinstance(f, s.Field) and f.key in ("train", "test"):
            if not isinstance(f.value, s.Block):
                raise SpecError(f"'{f.key}' in data must be a {{ ... }} block", f.value.span)
            if f.key == phase:
                phase_items += f.value.items
    common = tuple(
        i for i in block.items if not (isinstance(i, s.Field) and i.key in ("train", "test"))
    )
    given = {i.key for i in phase_items if isinstance(i, s.Field)}
    merged = tuple(i for i in common if not (isinstance(i, s.Field) and i.key in given))
    merged += phase_items
    cfg = convert(DataConfig, merged, "data", extra_names=("train", "test"))
    return cfg, field_spans(merged).get("path")


def _from_layer(layer: Layer, phase: str) -> tuple[DataConfig, Span | None]:
    """A Caffe data layer (Data: an LMDB, ImageData: a list file) as a DataConfig."""
    try:
        fields = layer.kind.data_source(layer.params)
        assert fields is not None
        cfg = DataConfig(**fields)
    except FieldError as e:
        raise DataError(f"{layer.type} layer '{layer.name}' {e}",
                        layer.field_spans.get(e.field_name or "", layer.span), e.hint) from None
    except ValueError as e:
        raise DataError(f"{layer.type} layer '{layer.name}': {e}", layer.span) from None
    return cfg, layer.field_spans.get("source", layer.span)


def _apply_data_path(spec_path: str, data_path: str) -> str:
    """``--data PATH``: PATH/<the spec path's last part> if that exists, else PATH."""
    if spec_path:
        tail = os.path.basename(os.path.normpath(spec_path))
        candidate = os.path.join(data_path, tail)
        if tail and os.path.exists(candidate):
            return candidate
    return data_path


def _locate(
    cfg: DataConfig, phase: str, path_span: Span | None, origin: str, *, from_flag: bool
) -> DataConfig:
    """Check that the data exists; pick a folder's train/val sub-folder for the phase."""
    kind = cfg.source
    if kind not in _PATH_KINDS:
        return cfg
    path = cfg.path
    what = "training" if phase == "train" else "test"
    subs = _PHASE_FOLDERS[phase]
    if not os.path.exists(path):
        if kind == "folder":
            layout = (
                f"class folders in {os.path.join(path, subs[0], '<class>')} "
                f"or {os.path.join(path, '<class>')}"
            )
        elif kind == "list":
            layout = "a file of 'image-path label' lines"
        else:
            layout = "a Caffe LMDB database folder (data.mdb, lock.mdb)"
        via = "--data" if from_flag else "the spec"
        if origin == "layer":
            hint = (
                "point netdsl at it with --data PATH (a folder holding "
                f"'{os.path.basename(os.path.normpath(path))}', or the data itself)"
            )
        else:
            hint = DATA_HINT if from_flag else "download it, or " + DATA_HINT
        raise DataError(
            f"the {what} data is not there: {_PATH_KINDS[kind]} '{path}' (from {via}) "
            f"does not exist; expected {layout}",
            path_span,
            hint=hint,
        )
    if kind == "folder" and os.path.isdir(path):
        for sub in subs:
            candidate = os.path.join(path, sub)
            if os.path.isdir(candidate):
                return replace(cfg, path=candidate)
    return cfg
