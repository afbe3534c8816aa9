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
import json
import os
import re
import sys
import uuid
from collections.abc import Mapping
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
from netdsl.diagnostics import DataError, Span, did_you_mean

__all__ = [
    "CaffeLayerBlobs",
    "blob_names",
    "read_caffemodel",
    "caffemodel_to_tensors",
    "save_weights",
    "load_weights",
    "load_weights_with_metadata",
    "check_weights_fit",
    "check_weight_values",
    "load_net_weights",
    "as_cpu_tensors",
    "fsync_dir",
    "file_sha256",
    "payload_sha256",
    "CHECKSUM_KEY",
    "TEMP_NAME",
]


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


def load_weights(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, torch.Tensor]:
    """Read a safetensors weights file into CPU tensors (never unpickles anything); see
    :func:`load_weights_with_metadata` for ``verify``."""
    return load_weights_with_metadata(path, verify=verify)[0]


def check_weights_fit(
    expected: Mapping[str, tuple[int, ...]],
    got: Mapping[str, tuple[int, ...]],
    *,
    path: str | os.PathLike[str] | None = None,
) -> None:
    """Raise a DataError listing every blob whose shape differs, is missing or is extra.

    ``path`` (the weights file) is where the error points, when given.
    """
    problems: list[str] = []
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    for key, want in expected.items():
        if key in got and tuple(got[key]) != tuple(want):
            problems.append(f"'{key}' has shape {_fmt(got[key])} but the net expects {_fmt(want)}")
    for key in missing:
        near = did_you_mean(key, unexpected)
        problems.append(f"missing '{key}' {_fmt(expected[key])}" + (f" ({near})" if near else ""))
    for key in unexpected:
        near = did_you_mean(key, missing)
        problems.append(
            f"unexpected '{key}' {_fmt(got[key])}, not a parameter of the net"
            + (f" ({near})" if near else "")
        )
    if not problems:
        return
    counts = []
    n_shape = len(problems) - len(missing) - len(unexpected)
    if n_shape:
        counts.append(f"{n_shape} with the wrong shape")
    if missing:
        counts.append(f"{len(missing)} missing")
    if unexpected:
        counts.append(f"{len(unexpected)} unexpected")
    limit = 20
    notes: list[tuple[str, Span | None]] = [(p, None) for p in problems[:limit]]
    if len(problems) > limit:
        notes.append((f"... and {len(problems) - limit} more", None))
    first = problems[0] if len(problems) == 1 else ", ".join(counts)
    raise DataError(
        f"weights do not fit the net: {first}",
        _span(path) if path is not None else None,
        hint="were these weights trained for this net? layer names and shapes must match",
        notes=notes,
    )


def _fmt(shape: tuple[int, ...]) -> str:
    return str(tuple(int(d) for d in shape))


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def _dtype(dtype: torch.dtype) -> str:
    """``floating-point (float32)``, ``integer (int64)``, ``bool``."""
    kind, name = _kind(dtype), str(dtype).removeprefix("torch.")
    return kind if kind == name else f"{kind} ({name})"


def _nonfinite(t: torch.Tensor) -> tuple[int, int]:
    """(NaN count, infinite count) of a tensor; (0, 0) for integer and bool tensors."""
    if not (t.is_floating_point() or t.is_complex()) or bool(torch.isfinite(t).all()):
        return 0, 0
    return int(torch.isnan(t).sum()), int(torch.isinf(t).sum())


def _refuse(problems: list[str], what: str, path: str | os.PathLike[str] | None,
            hint: str) -> DataError:
    limit = 20
    notes: list[tuple[str, Span | None]] = [(q, None) for q in problems[:limit]]
    if len(problems) > limit:
        notes.append((f"... and {len(problems) - limit} more", None))
    first = problems[0] if len(problems) == 1 else f"{len(problems)} tensors, listed below"
    return DataError(f"{what}: {first}", _span(path) if path is not None else None,
                     hint=hint, notes=notes if len(problems) > 1 else ())


def check_weight_values(
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.dtype],
    *,
    path: str | os.PathLike[str] | None = None,
    allow_nonfinite: bool = False,
    what: str = "the weights",
) -> None:
    """Refuse, naming every tensor at fault in one DataError at ``path``: a tensor whose
    kind differs from what ``expected`` says the net holds (an integer or bool tensor
    where the net has floating point, or the reverse; float64 for float32 is converted,
    not refused), and, unless ``allow_nonfinite``, NaN or infinite values. Only the keys
    of ``expected`` are looked at."""
    wrong: list[str] = []
    nonfinite: list[str] = []
    for key, want in expected.items():
        t = tensors[key]
        if _kind(t.dtype) != _kind(want):
            wrong.append(f"'{key}' is {_dtype(t.dtype)} where the net has {_dtype(want)}")
            continue
        if not allow_nonfinite:
            nan, inf = _nonfinite(t)
            if nan or inf:
                counts = " and ".join(part for part in (f"{nan:,} NaN" if nan else "",
                                                         f"{inf:,} infinite" if inf else "")
                                      if part)
                nonfinite.append(f"'{key}' has {counts} among its {t.numel():,} values")
    if wrong:
        raise _refuse(wrong, f"tensors of the wrong type in {what}", path,
                      "the file holds integer or quantised tensors, or was written for another "
                      "net; netdsl loads floating-point values only where the net has them")
    if nonfinite:
        raise _refuse(nonfinite, f"non-finite values in {what}", path,
                      "the run that wrote them probably diverged (try a lower base_lr, or "
                      "clip_gradients); --allow-nonfinite loads them anyway")


def load_net_weights(net: Any, path: str | os.PathLike[str], *, strict: bool,
                     allow_nonfinite: bool = False) -> list[str]:
    """Load a ``.safetensors`` or ``.caffemodel`` file into a compiled net.

    Blobs are matched by ``<layer>.<blob>``; a matched blob of another shape is an error
    naming it (:func:`check_weights_fit`). ``strict``: every blob of the net must be in the
    file (evaluating); otherwise blobs the file lacks keep their fillers and blobs the net
    lacks are ignored (Caffe's ``CopyTrainedLayersFrom``, for fine-tuning). The file is
    checked in full first (its checksum, the kinds of its tensors and, unless
    ``allow_nonfinite``, that every value is finite: :func:`check_weight_values`), so a
    refused file changes nothing. Returns the keys loaded.
    """
    p = os.fspath(path)
    if p.endswith(".solverstate.safetensors"):
        raise DataError(
            "this is a snapshot's solver state, not weights",
            Span(p),
            hint="give the snapshot's weights file (the .safetensors without .solverstate), "
            "or use --resume to continue training",
        )
    tensors: dict[str, torch.Tensor]
    if p.endswith(".caffemodel"):
        tensors = {k: torch.from_numpy(v) for k, v in caffemodel_to_tensors(p).items()}
    else:
        tensors = load_weights(p)
    state = net.state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if strict:
        check_weights_fit(expected, {k: v for k, v in got.items() if k in expected}, path=p)
    else:
        common = [k for k in got if k in expected]
        if not common:
            check_weights_fit(expected, got, path=p)  # nothing matches: list everything
        check_weights_fit({k: expected[k] for k in common}, {k: got[k] for k in common}, path=p)
    loaded = {k: tensors[k] for k in state if k in tensors}  # in the net's order
    check_weight_values(loaded, {k: state[k].dtype for k in loaded}, path=p,
                        allow_nonfinite=allow_nonfinite)
    net.load_state_dict(loaded, strict=False)
    return list(loaded)
