"""Loading for the runtime: where a phase's data is, which inputs take images and labels,
and the input shapes a Caffe data layer leaves to its data.

Paths of the data are relative to the current directory, as in Caffe. ``--data PATH``
(``data_path``) replaces the spec's path: for a spec path whose last part exists under
``PATH`` (``--data /datasets/mnist`` for ``examples/mnist/mnist_train_lmdb``) that file
is used, else ``PATH`` itself. An image folder with ``train/`` and ``val/`` (or ``test/``)
sub-folders is used per phase, as ``specs/alexnet.net`` lays ImageNet out. Data that is not
where the config says is a :class:`DataError` naming the path and how to point elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from netdsl import ir
from netdsl.diagnostics import DataError, Span
from netdsl.sections import SOURCE_KINDS, DataConfig, missing_data, phase_data

if TYPE_CHECKING:
    from netdsl.runtime.data import LabelRange

__all__ = ["DATA_HINT", "Feeds", "data_config", "detect_source", "feeds_of",
           "layer_input_shapes"]

#: How to point netdsl at data that is somewhere else.
DATA_HINT = "point netdsl at it with --data PATH, or --set data.path=PATH"

_PHASE_FOLDERS = {"train": ("train",), "test": ("val", "test", "validation")}


def data_config(net: ir.Net, phase: str, data_path: str | None = None
                ) -> tuple[DataConfig, Span | None]:
    """The phase's data config, found where it says (``data_path``: ``--data``), and where
    it was written (for errors about it). A net without data is a DataError."""
    found = phase_data(net)
    if found is None:
        raise missing_data(net, phase)
    cfg, path_span = found.config, found.path_span
    if data_path is not None:
        path = _apply_data_path(cfg.path, data_path)
        cfg = replace(cfg, path=path, source=detect_source(path, cfg.source))
        path_span = None
    if SOURCE_KINDS[cfg.source] and not cfg.path:
        raise DataError(f"source {cfg.source} needs path (the {SOURCE_KINDS[cfg.source]})",
                        found.span, "give it: data { path: \"...\" }, or --data PATH")
    cfg = _locate(cfg, phase, path_span, found.origin, from_flag=data_path is not None)
    return cfg, found.span


def detect_source(path: str, given: str) -> str:
    """What ``--data PATH`` points at: an LMDB database (a folder holding ``data.mdb``), a
    folder of class folders, or a list file; ``given`` (the spec's source) where the path
    does not exist yet (so the error names it) or already is of that kind."""
    if os.path.isdir(path):
        kind = "lmdb" if os.path.isfile(os.path.join(path, "data.mdb")) else "folder"
    elif os.path.isfile(path):
        kind = "lmdb" if os.path.basename(path) == "data.mdb" else "list"
    else:
        return given if SOURCE_KINDS.get(given) else "folder"
    return kind


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
    if not SOURCE_KINDS.get(kind):
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
                f"'{os.path.basename(os.path.normpath(path))}', or the data itself), or try "
                "the net on random data: --set data.source=synthetic --input NAME=C,H,W"
            )
        else:
            hint = DATA_HINT if from_flag else "download it, or " + DATA_HINT
        raise DataError(
            f"the {what} data is not there: {SOURCE_KINDS[kind]} '{path}' (from {via}) "
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


@dataclasses.dataclass(frozen=True)
class Feeds:
    """Which input blob takes the images and which the labels (``None``: no label input)."""

    data: str
    label: str | None
    shape: tuple[int, int, int]  # the image input's (C, H, W)

    def inputs(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.data: x} if self.label is None else {self.data: x, self.label: y}


def feeds_of(net: Any) -> Feeds:
    """The image and label inputs of a compiled net, from its inputs' shapes: the image is
    the input of shape ``(N, C, H, W)``, the label the one of shape ``(N,)``."""
    blobs = net.shapes.blobs
    images = [i for i in net.inputs if len(blobs[i]) == 4]
    labels = [i for i in net.inputs if len(blobs[i]) == 1]
    others = [i for i in net.inputs if i not in images and i not in labels]
    where = Span(net.net.path)
    if len(images) != 1 or len(labels) > 1 or others:
        shown = ", ".join(f"{i} {list(blobs[i])}" for i in net.inputs) or "none"
        raise DataError(
            f"netdsl feeds a net one image input (N, C, H, W) and at most one label input "
            f"(N,); net '{net.net.name}' has inputs {shown}",
            where,
            hint='declare input { name: "data" shape: [C, H, W] } and '
            'input { name: "label" shape: [] }',
        )
    _, c, h, w = (int(d) for d in blobs[images[0]])  # 4-D: found above
    return Feeds(images[0], labels[0] if labels else None, (c, h, w))


def label_range(net: Any, label: str | None) -> LabelRange | None:
    """The labels a compiled net's loss (or metric) takes from the ``label`` input: the
    size of its scores' class axis, and its ``ignore_label``; ``None`` where no layer
    reading class scores takes that label."""
    from netdsl.runtime.data import LabelRange

    if label is None:
        return None
    for lay in net.net.layers:
        if lay.kind.reads_class_scores and tuple(lay.bottoms[1:2]) == (label,):
            scores = net.shapes.blobs[lay.bottoms[0]]
            axis = int(getattr(lay.params, "axis", 1))
            if -len(scores) <= axis < len(scores):
                ignore = getattr(lay.params, "ignore_label", None)
                return LabelRange(int(scores[axis]), None if ignore is None else int(ignore))
    return None


def layer_input_shapes(net: ir.Net, cfg: DataConfig,
                       given: Mapping[str, tuple[int, ...]] | None = None
                       ) -> dict[str, tuple[int, ...]]:
    """Input shapes of a Caffe Data/ImageData layer that the spec cannot know (they are in
    the database or the images), read from the data ``cfg`` (the layer's own, or a data
    section that replaces it: ``--set data.source=...``), after the shapes ``given``
    (``--input NAME=C,H,W``), which win. Synthetic and digits data take any shape: their
    data layer needs ``--input``."""
    shapes = dict(given or {})
    layer = next((lay for lay in net.layers if lay.kind.has_data_source), None)
    if layer is None or layer.tops[0] in shapes:
        return shapes
    from netdsl.runtime.data import LmdbSource, make_source

    if cfg.source in ("synthetic", "digits"):
        return shapes  # they take any input shape: the compiler asks for --input
    if cfg.source == "lmdb":
        native = tuple(int(d) for d in LmdbSource(cfg.path).shape)
    elif cfg.resize and not cfg.crop:
        c = cfg.channels or 3
        native = (c, *cfg.resize)
    elif cfg.crop:
        native = (cfg.channels or 3, cfg.crop, cfg.crop)
    else:
        kind = "folder" if cfg.source == "folder" else "list"
        opts: dict[str, Any] = ({"root": cfg.path} if kind == "folder"
                                else {"path": cfg.path, "root": cfg.root})
        src = make_source(kind, channels=cfg.channels or 3, bgr=cfg.bgr, **opts)
        native = tuple(int(d) for d in np.asarray(src.get(0)[0]).shape)
    c = native[0] if not cfg.channels else cfg.channels
    h, w = (cfg.crop, cfg.crop) if cfg.crop else native[1:]
    shapes[layer.tops[0]] = (c, h, w)
    return shapes
