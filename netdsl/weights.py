"""Reading Caffe weights (:mod:`netdsl.caffemodel`, re-exported here) and reading/writing
netdsl's own weight files (safetensors), which it writes itself (``_write_safetensors``).

netdsl names a parameter ``<layer>.<blob>``; the blob names of each Caffe layer type
are the layer registry's ``LayerType.blobs``, in Caffe's order, so a ``.caffemodel`` converts to the
same keys netdsl uses for its own ``.safetensors`` files. Arrays keep Caffe's layout
(convolution weights ``out x in/group x kh x kw``, inner-product weights ``out x in``).

Safety: netdsl never unpickles a user's file. Weights are read from safetensors (a JSON
header plus raw bytes) or from Caffe's protobuf, nothing else, and a file is checked in
full before anything from it reaches a net: every blob's shape against its data (in
Python integers, before any array is made), the sha256 that netdsl writes into its own
files, the kinds of the tensors and, unless asked otherwise, that every value is finite.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sys
import textwrap
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from netdsl.caffemodel import (  # re-exported: the runtime reads weights through here
    CaffeLayerBlobs,
    blob_names,
    caffemodel_to_tensors,
    read_caffemodel,
)
from netdsl.diagnostics import DataError, Span
from netdsl.weight_checks import check_weight_values, check_weights_fit, fmt_shape

__all__ = [
    "CaffeLayerBlobs",
    "blob_names",
    "read_caffemodel",
    "caffemodel_to_tensors",
    "save_weights",
    "load_weights",
    "load_weights_with_metadata",
    "stored_order",
    "check_weights_fit",
    "check_weight_values",
    "load_net_weights",
    "finetune",
    "FinetuneReport",
    "CopiedLayer",
    "weight_paths",
    "as_cpu_tensors",
    "fsync_dir",
    "file_sha256",
    "payload_sha256",
    "CHECKSUM_KEY",
    "TEMP_NAME",
]


_LOG = logging.getLogger("netdsl")


def _span(path: str | os.PathLike[str]) -> Span:
    return Span(str(path))


# --------------------------------------------------------------------------- safetensors


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def as_cpu_tensors(tensors: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, as safetensors stores them (no shared memory)."""
    out: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {type(name).__name__}")
        if isinstance(value, np.ndarray):
            if not value.dtype.isnative:
                value = value.astype(value.dtype.newbyteorder("="))
            t = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, torch.Tensor):
            t = value.detach().to("cpu")
        else:
            raise TypeError(f"'{name}': expected a torch.Tensor or numpy array, got {type(value)}")
        t = t.contiguous()
        # Tensors sharing memory (tied weights, views) are copied: each is stored whole.
        if t.numel() > 0:
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen_storage:
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen_storage.add(ptr)
        out[name] = t
    return out


#: safetensors' names of the dtypes it stores (its format's ``dtype`` field).
_ST_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.uint16: "U16", torch.uint32: "U32",
    torch.uint64: "U64", torch.complex64: "C64", torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}

#: The metadata entry holding :func:`payload_sha256` of a file netdsl wrote.
CHECKSUM_KEY = "payload_sha256"

#: The name of a temporary file :func:`save_weights` writes before renaming it into place:
#: ``.<name>.<pid>-<8 hex>.tmp`` (group 1: the destination's name, group 2: the writer's
#: process id), or the older ``.<name>.<12 hex>.tmp``.
TEMP_NAME = re.compile(r"\.(.+)\.(?:(\d+)-[0-9a-f]{8}|[0-9a-f]{12})\.tmp")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _raw_bytes(t: torch.Tensor) -> np.ndarray:
    """A contiguous CPU tensor's bytes, without a copy."""
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()


def payload_sha256(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """The sha256 of tensors (names, dtypes, shapes, bytes) and string metadata, which
    :func:`save_weights` stores under :data:`CHECKSUM_KEY` and loading verifies.

    It is computed from the content rather than the file's bytes, because it is itself
    stored in the file's header; the ``format`` entry and the checksum are left out.
    """
    h = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k not in (CHECKSUM_KEY, "format")}
    for key in sorted(meta):
        h.update(f"meta\0{key}\0{len(meta[key])}\0{meta[key]}\0".encode())
    for name in sorted(tensors):
        t = tensors[name]
        raw = _raw_bytes(t)
        h.update(f"tensor\0{name}\0{t.dtype}\0{tuple(t.shape)}\0{raw.nbytes}\0".encode())
        h.update(raw.data)
    return h.hexdigest()


def _write_safetensors(fd: int, tensors: Mapping[str, torch.Tensor],
                       metadata: Mapping[str, str]) -> None:
    """Write the safetensors format to ``fd`` and fsync it (closes ``fd``): an 8-byte
    little-endian header length, the JSON header padded with spaces to 8 bytes, then each
    tensor's little-endian bytes in order. netdsl writes it itself, rather than with
    ``safetensors.torch.save_file``, so that no file but its own named temporary file is
    ever made (save_file goes through a ``.tmpXXXXXX`` file of its own, mode 0600)."""
    with os.fdopen(fd, "wb") as f:
        header: dict[str, Any] = {"__metadata__": dict(metadata)}
        offset = 0
        for name, t in tensors.items():
            kind = _ST_DTYPES.get(t.dtype)
            if kind is None:
                raise TypeError(f"'{name}': safetensors cannot store dtype {t.dtype}")
            size = t.numel() * t.element_size()
            header[name] = {"dtype": kind, "shape": list(t.shape),
                            "data_offsets": [offset, offset + size]}
            offset += size
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for t in tensors.values():
            f.write(_raw_bytes(t).data)
        f.flush()
        os.fsync(f.fileno())


def save_weights(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor | np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` to a safetensors file atomically and durably.

    The data goes to a temporary file in the destination folder (``TEMP_NAME``), which
    is fsynced and then renamed over ``path`` (and the folder fsynced), so a crash leaves
    either the old file or the complete new one, never a torn file; a process killed
    midway leaves only its temporary file. The file gets the mode a plain ``open()``
    would give (0o666 less the umask). The metadata gains :data:`CHECKSUM_KEY`.
    """
    if sys.byteorder != "little":  # safetensors is little-endian; netdsl writes raw bytes
        raise NotImplementedError("writing safetensors needs a little-endian machine")
    dest = Path(path)
    folder = dest.parent
    if not folder.is_dir():
        raise DataError(
            "cannot write weights: the folder does not exist",
            _span(dest),
            hint=f"create '{folder}' first",
        )
    meta = {"format": "pt"}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("safetensors metadata must map str to str")
        meta[k] = v
    saveable = as_cpu_tensors(tensors)
    meta[CHECKSUM_KEY] = payload_sha256(saveable, meta)
    tmp = folder / f".{dest.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        # O_EXCL: a new file of our own; mode 0o666, which the kernel reduces by the umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        _write_safetensors(fd, saveable, meta)
        os.replace(tmp, dest)
    except OSError as e:
        raise DataError(
            f"cannot write weights: {e.strerror or e}", _span(dest),
            hint="check free space and permissions"
        ) from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass
    fsync_dir(folder)
    return dest


def _not_safetensors_hint(head: bytes, path: Path) -> str:
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return (
            "this looks like a PyTorch pickle (.pt/.pth); netdsl never unpickles files "
            "for safety: re-save the state dict with safetensors"
        )
    if path.suffix == ".caffemodel":
        return "this is a Caffe model: convert it to safetensors first"
    return "expected a .safetensors file; it may be truncated or corrupt"


_SNAPSHOT_WEIGHTS = re.compile(r"(.+_iter_\d+)\.safetensors")


def _check_snapshot_partner(path: Path) -> None:
    """A snapshot's weights file read on its own is checked against the sha256 that the
    snapshot's solver state, beside it, records for it."""
    m = _SNAPSHOT_WEIGHTS.fullmatch(path.name)
    if m is None or path.name.endswith(".solverstate.safetensors"):
        return
    partner = path.with_name(m.group(1) + ".solverstate.safetensors")
    if not partner.is_file():
        return
    try:
        with safe_open(str(partner), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, ValueError, TypeError, KeyError, RuntimeError, OSError):
        return  # an unreadable solver state says nothing about this file
    want = meta.get("weights_sha256")
    if meta.get("netdsl") != "solverstate" or meta.get("weights_file") != path.name or not want:
        return
    if file_sha256(path) != want:
        raise DataError(
            f"the weights file does not match the checksum that its snapshot's solver state "
            f"'{partner.name}' records for it: it is damaged, or was replaced after the "
            "snapshot was written",
            _span(path),
            hint="use an earlier snapshot's weights; to load a file put there on purpose, "
            "move it away from the solver state",
        )


def load_weights_with_metadata(
    path: str | os.PathLike[str], *, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Like :func:`load_weights`, also returning the file's string metadata.

    ``verify``: check the checksum netdsl writes into its files (:data:`CHECKSUM_KEY`)
    and, for a snapshot's weights, the one its solver state records beside it.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("weights file not found", _span(p), hint="check the path")
    if p.is_dir():
        raise DataError("weights path is a folder, not a file", _span(p))
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, TypeError, KeyError, RuntimeError, OSError) as e:
        try:
            with open(p, "rb") as fh:
                head = fh.read(8)
        except OSError:
            head = b""
        raise DataError(
            f"not a readable safetensors file ({e})", _span(p), hint=_not_safetensors_hint(head, p)
        ) from None
    if verify:
        want = metadata.get(CHECKSUM_KEY)
        if want is not None and payload_sha256(tensors, metadata) != want:
            raise DataError(
                "the weights file is corrupt: its tensors or metadata do not match the "
                "checksum written with them",
                _span(p),
                hint="the file was damaged or edited after it was written; use another copy",
            )
        _check_snapshot_partner(p)
    return tensors, metadata


def stored_order(path: str | os.PathLike[str]) -> list[str]:
    """The tensors of a safetensors file in the order their bytes are stored, which is
    the order they were written in (``safe_open`` lists them sorted by name): netdsl
    writes a net's blobs in its layers' order and each layer's in Caffe's."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    entries = [(v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__"]
    return [k for _, k in sorted(entries)]


def load_weights(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, torch.Tensor]:
    """Read a safetensors weights file into CPU tensors (never unpickles anything); see
    :func:`load_weights_with_metadata` for ``verify``."""
    return load_weights_with_metadata(path, verify=verify)[0]


def load_net_weights(net: Any, path: str | os.PathLike[str], *, strict: bool,
                     allow_nonfinite: bool = False) -> list[str]:
    """Load a ``.safetensors`` or ``.caffemodel`` file into a compiled net.

    Blobs are matched by ``<layer>.<blob>``. ``strict`` (evaluating): every blob of the
    net must be in the file, with its shape (:func:`check_weights_fit`). Otherwise this is
    fine-tuning (:func:`finetune`, Caffe's ``CopyTrainedLayersFrom``): ``path`` may be a
    comma-separated list of files, copied in order; layers the net lacks are ignored,
    blobs the files lack keep their fillers, and what was copied is logged as a table.
    A file is checked in full first (its checksum, the kinds of its tensors and, unless
    ``allow_nonfinite``, that every value is finite: :func:`check_weight_values`), so a
    refused file changes nothing. Returns the keys loaded, in the net's order.
    """
    if not strict:
        report = finetune(net, path, allow_nonfinite=allow_nonfinite)
        if os.environ.get("RANK", "0") == "0":  # once, not once per process of a launch
            _LOG.info("%s", report.table())
        return report.keys
    p = os.fspath(path)
    tensors = _read_any(p)
    state = net.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    check_weights_fit(expected, {k: v for k, v in got.items() if k in expected}, path=p)
    loaded = {k: tensors[k] for k in state if k in tensors}  # in the net's order
    check_weight_values(loaded, {k: state[k].dtype for k in loaded}, path=p,
                        allow_nonfinite=allow_nonfinite)
    net.load_state_dict(loaded, strict=False)
    return list(loaded)


def _read_any(p: str) -> dict[str, torch.Tensor]:
    """A weights file's tensors, whichever of the two formats it is."""
    if p.endswith(".solverstate.safetensors"):
        raise DataError(
            "this is a snapshot's solver state, not weights",
            Span(p),
            hint="give the snapshot's weights file (the .safetensors without .solverstate), "
            "or use --resume to continue training",
        )
    if p.endswith(".caffemodel"):
        return {k: torch.from_numpy(v) for k, v in caffemodel_to_tensors(p).items()}
    return load_weights(p)


# --------------------------------------------------------------------------- fine-tuning


def weight_paths(path: str | os.PathLike[str]) -> list[str]:
    """``a.safetensors,b.caffemodel`` -> both paths (Caffe's ``--weights`` takes a comma
    list too); a path that exists as it is, commas and all, is one file."""
    p = os.fspath(path)
    if "," not in p or os.path.exists(p):
        return [p]
    parts = [q.strip() for q in p.split(",") if q.strip()]
    if not parts:
        raise DataError("no weights file given", Span(p), hint="give a file, or a comma list")
    return parts


def _layer_of(key: str) -> str:
    """``conv1/7x7.weight`` -> ``conv1/7x7``: blob names have no dots, layer names may."""
    return key.rsplit(".", 1)[0]


@dataclass(frozen=True)
class CopiedLayer:
    """A net layer and what fine-tuning gave it."""

    layer: str
    #: its blobs (name, shape) in the net's order, and the file each was copied from
    #: (None: not in any file, left at its filler)
    blobs: tuple[tuple[str, tuple[int, ...], str | None], ...]


@dataclass
class FinetuneReport:
    """What :func:`finetune` did, layer by layer, as Caffe logs it (and a bit more)."""

    files: list[str]
    layers: list[CopiedLayer] = field(default_factory=list)  # every net layer with blobs
    #: source layers that are not in the net, with the file they are in
    ignored: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the blobs loaded, in the net's order

    @property
    def copied(self) -> list[str]:
        return [c.layer for c in self.layers if any(f for *_, f in c.blobs)]

    @property
    def fresh(self) -> list[str]:
        """Net layers that no file has: left at their fillers."""
        return [c.layer for c in self.layers if not any(f for *_, f in c.blobs)]

    def table(self, width: int = 80) -> str:
        """The report as a table of ``width`` columns (rich, no colour)."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        names = {f: os.path.basename(f) for f in self.files}
        if len(set(names.values())) < len(names):
            names = {f: f for f in self.files}
        def n(count: int, what: str) -> str:
            return f"{count} {what}{'' if count == 1 else 's'}"

        head = textwrap.wrap(f"fine-tuning from {', '.join(names.values())}", width) + [
            f"{n(len(self.copied), 'layer')} copied, {n(len(self.ignored), 'source layer')} "
            f"ignored, {n(len(self.fresh), 'layer')} left at fillers"]
        t = Table(box=box.SIMPLE_HEAD, padding=(0, 1))
        t.add_column("layer", overflow="fold")
        t.add_column("blobs", overflow="fold")
        t.add_column("what happened", overflow="fold")
        for c in self.layers:
            shapes = ", ".join(f"{b} {_dims(s)}" for b, s, _ in c.blobs)
            froms = {f for *_, f in c.blobs}
            if froms == {None}:
                what = "left at its fillers (not in the files)"
            else:
                what = "copied from " + ", ".join(names[f] for f in self.files if f in froms)
                kept = [b for b, _, f in c.blobs if f is None]
                if kept:
                    what += f"; {', '.join(kept)} left at its filler"
            t.add_row(c.layer, shapes, what)
        for layer, f in self.ignored:
            t.add_row(layer, "", f"ignored: not in the net ({names[f]})")
        console = Console(file=io.StringIO(), width=width, color_system=None,
                          highlight=False, emoji=False)
        console.print(t)
        out = console.file.getvalue()  # type: ignore[attr-defined]  # our StringIO
        lines = [line.rstrip() for line in str(out).splitlines()]
        return "\n".join(head + [line for line in lines if line]).strip("\n")


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def finetune(net: Any, path: str | os.PathLike[str], *,
             allow_nonfinite: bool = False) -> FinetuneReport:
    """Fine-tune: copy the blobs of one file or a comma list of files into ``net``, as
    Caffe's ``Net::CopyTrainedLayersFrom`` does for each ``--weights`` file in turn (a
    later file overrides an earlier one).

    Layers are matched by name. A source layer the net lacks is ignored (Caffe logs
    "Ignoring source layer"); a matched blob of another shape is an error (Caffe's CHECK:
    "Cannot copy param N weights from layer X; shape mismatch ... rename the layer"), and
    so is a matched layer with a blob the net's layer does not have (Caffe's
    "Incompatible number of blobs"). Unlike Caffe, a matched layer may lack some of the
    net's blobs (they keep their fillers, and the report says so). A file none of whose
    blobs fits the net is refused, listing everything: it is probably the wrong file.
    Every file is read and checked before the net changes.
    """
    files = weight_paths(path)
    state = net.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    net_layers = {_layer_of(k) for k in expected}
    merged: dict[str, tuple[torch.Tensor, str]] = {}
    report = FinetuneReport(files)
    for p in files:
        tensors = _read_any(p)
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        common = [k for k in got if k in expected]
        if not common:
            check_weights_fit(expected, got, path=p)  # nothing matches: list everything
        _check_copy(expected, got, net_layers, p)
        loaded = {k: tensors[k] for k in common}
        check_weight_values(loaded, {k: state[k].dtype for k in loaded}, path=p,
                            allow_nonfinite=allow_nonfinite)
        for k in common:
            merged[k] = (tensors[k], p)
        ignored = dict.fromkeys(_layer_of(k) for k in got if _layer_of(k) not in net_layers)
        report.ignored += [(layer, p) for layer in ignored]
    by_layer: dict[str, list[tuple[str, tuple[int, ...], str | None]]] = {}
    for k, shape in expected.items():
        layer = _layer_of(k)
        by_layer.setdefault(layer, []).append(
            (k[len(layer) + 1:], shape, merged[k][1] if k in merged else None))
    report.layers = [CopiedLayer(layer, tuple(b)) for layer, b in by_layer.items()]
    report.keys = [k for k in state if k in merged]
    net.load_state_dict({k: merged[k][0] for k in report.keys}, strict=False)
    return report


_RENAME_HINT = "rename the layer to learn its parameters from scratch (as Caffe says)"


def _check_copy(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, tuple[int, ...]],
                net_layers: set[str], path: str) -> None:
    """Caffe's two CHECKs in CopyTrainedLayersFrom, on every matched layer at once."""
    problems: list[tuple[str, str, str]] = []  # (message, detail, one line of a list)
    index: dict[str, int] = {}  # the blob's place in its layer: Caffe's "param N"
    count: dict[str, int] = {}
    for k in expected:
        layer = _layer_of(k)
        index[k] = count.get(layer, 0)
        count[layer] = index[k] + 1
    for k, shape in got.items():
        layer = _layer_of(k)
        if layer not in net_layers:
            continue
        if k not in expected:
            theirs = ", ".join(j[len(layer) + 1:] for j in expected if _layer_of(j) == layer)
            problems.append((f"incompatible number of blobs for layer '{layer}'",
                             f"the file's '{k}' is not a blob of the net's layer ({theirs})",
                             f"'{k}': the net's layer has no such blob ({theirs})"))
        elif tuple(shape) != tuple(expected[k]):
            mine, theirs = fmt_shape(shape), fmt_shape(expected[k])
            problems.append((f"cannot copy param {index[k]} of layer '{layer}' ('{k}'): "
                             "shape mismatch",
                             f"the file's shape is {mine}, the net's {theirs}",
                             f"'{k}' (param {index[k]}): {mine} in the file, {theirs} in the net"))
    if not problems:
        return
    if len(problems) == 1:
        message, detail, _ = problems[0]
        raise DataError(message, Span(path), hint=_RENAME_HINT, notes=[(detail, None)])
    raise DataError(f"{len(problems)} blobs of the file cannot be copied into the net",
                    Span(path), hint=_RENAME_HINT, notes=[(q, None) for *_, q in problems])
