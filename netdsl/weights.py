"""Reading Caffe weights and reading/writing netdsl's own weight files (safetensors).

netdsl names a parameter ``<layer>.<blob>``; the blob names of each Caffe layer type
are the layer registry's ``LayerType.blobs``, in Caffe's order, so a ``.caffemodel`` converts to the
same keys netdsl uses for its own ``.safetensors`` files. Arrays keep Caffe's layout
(convolution weights ``out x in/group x kh x kw``, inner-product weights ``out x in``).

Safety: netdsl never unpickles a user's file. Weights are read from safetensors (a JSON
header plus raw bytes) or from Caffe's protobuf, nothing else.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf.message import DecodeError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from netdsl import caffe_pb
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
    "load_net_weights",
    "as_cpu_tensors",
    "fsync_dir",
]


_CAFFE_HINT = (
    "expected a binary .caffemodel (a NetParameter protobuf with trained blobs); "
    "a .prototxt describes the net but holds no weights"
)


@dataclass
class CaffeLayerBlobs:
    """One layer of a caffemodel that carries parameter blobs."""

    name: str
    type: str  # V2 type string ("Convolution"); "" when the file gives none
    blobs: list[np.ndarray] = field(default_factory=list)


def blob_names(layer_type: str, count: int) -> list[str]:
    """Names of a layer's ``count`` blobs: the registry's (``caffe_blob_names``), else
    ``blobN``."""
    from .layers import REGISTRY

    kind = REGISTRY.get(layer_type)
    known = kind.caffe_blob_names(count) if kind is not None else ()
    return [known[i] if i < len(known) else f"blob{i}" for i in range(count)]


def _span(path: str | os.PathLike[str]) -> Span:
    return Span(str(path))


def _read_user_file(path: Path, what: str) -> bytes:
    if not path.exists():
        raise DataError(f"{what} file not found", _span(path), hint="check the path")
    if path.is_dir():
        raise DataError(f"{what} path is a folder, not a file", _span(path))
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {what} file: {e.strerror or e}", _span(path)) from None


def _legacy_shape(dims: list[int], layer_type: str, index: int) -> tuple[int, ...]:
    """A blob stored with the deprecated 4-D num/channels/height/width fields, in its real
    shape. Caffe compares those right-aligned against the layer's blob shape padded with
    leading 1s (Blob::ShapeEquals with LegacyShape), so an inner-product weight O x I was
    saved as 1 x 1 x O x I and every bias as 1 x 1 x 1 x N; the layer type knows its
    blobs' axes (``legacy_blob_axes``). Caffe's V0->V1->V2 upgrade copies blobs unchanged,
    so legacy blobs also appear inside V2 ``layer`` messages."""
    from .layers import REGISTRY

    kind = REGISTRY.get(layer_type)
    axes = kind.legacy_blob_axes if kind is not None else ()
    if index < len(axes):
        drop = 4 - axes[index]
        if all(d == 1 for d in dims[:drop]):
            return tuple(dims[drop:])
        return tuple(dims)  # does not fit the usual layout: keep all four axes
    # Unknown type: drop leading 1s (keeping at least one axis).
    while len(dims) > 1 and dims[0] == 1:
        dims = dims[1:]
    return tuple(dims)


#: A ``caffe_pb.BlobProto`` message. caffe_pb makes its classes at run time from
#: descriptors, so to mypy they are values, not types, and their fields are unknown.
_BlobProto = Any


def _blob_to_array(
    blob: _BlobProto, layer: str, layer_type: str, index: int, path: Path
) -> np.ndarray:
    where = f"layer '{layer}' blob {index}"
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        dims = [blob.num, blob.channels, blob.height, blob.width]
        legacy = True
    else:
        dims = list(blob.shape.dim)
        legacy = False
    if any(d < 0 for d in dims):
        raise DataError(f"{where} has a negative dimension {dims}", _span(path), hint=_CAFFE_HINT)
    shape = _legacy_shape(dims, layer_type, index) if legacy else tuple(dims)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(blob.double_data) > 0:  # Caffe's FromProto prefers double_data when present
        values = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        values = np.asarray(blob.data, dtype=np.float32)
    if values.size != count:
        raise DataError(
            f"{where} has {values.size} values but its shape {list(dims)} needs {count}",
            _span(path),
            hint="the file is truncated or corrupt, or holds no trained data",
        )
    return values.reshape(shape)


def read_caffemodel(path: str | os.PathLike[str]) -> list[CaffeLayerBlobs]:
    """Read the parameter blobs of a binary ``.caffemodel``, layer by layer.

    Handles V2 (``layer``), V1 (``layers`` with enum types) and V0 (``layers`` wrapping
    a ``V0LayerParameter``) nets; types come back as V2 strings. Layers without blobs
    are left out. Blobs come back as float32 arrays in Caffe's shapes.
    """
    p = Path(path)
    raw = _read_user_file(p, "Caffe model")
    net = caffe_pb.NetParameter()
    try:
        net.ParseFromString(raw)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise DataError(
            f"not a Caffe binary model (protobuf parse failed: {e})", _span(p), hint=_CAFFE_HINT
        ) from None

    entries: list[tuple[str, str, list[_BlobProto]]] = []
    if len(net.layers) > 0:
        # Like Caffe's UpgradeV1Net: a net with V1 ``layers`` ignores any V2 ``layer``.
        for v1 in net.layers:
            if v1.HasField("layer"):  # V0: name, type and blobs live in the V0 message
                v0 = v1.layer
                v2_type = caffe_pb.V0_TO_V2_TYPE.get(v0.type, v0.type)
                entries.append((v0.name, v2_type, list(v0.blobs)))
            else:
                v2_type = caffe_pb.V1_TO_V2_TYPE.get(v1.type, "")
                entries.append((v1.name, v2_type, list(v1.blobs)))
    else:
        for lp in net.layer:
            entries.append((lp.name, lp.type, list(lp.blobs)))

    out: list[CaffeLayerBlobs] = []
    for i, (name, ltype, blobs) in enumerate(entries):
        if not blobs:
            continue
        if not name:
            raise DataError(
                f"layer #{i} (type '{ltype}') has weights but no name", _span(p), hint=_CAFFE_HINT
            )
        arrays = [_blob_to_array(b, name, ltype, j, p) for j, b in enumerate(blobs)]
        out.append(CaffeLayerBlobs(name, ltype, arrays))
    if not out:
        raise DataError("the Caffe model holds no layers with weights", _span(p), hint=_CAFFE_HINT)
    return out


def caffemodel_to_tensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A caffemodel's blobs keyed ``<layer>.<blob name>`` (names from ``LayerType.blobs``)."""
    tensors: dict[str, np.ndarray] = {}
    for layer in read_caffemodel(path):
        for bname, arr in zip(blob_names(layer.type, len(layer.blobs)), layer.blobs, strict=True):
            key = f"{layer.name}.{bname}"
            if key in tensors:
                raise DataError(
                    f"two layers named '{layer.name}' both carry weights",
                    _span(path),
                    hint="layer names in a caffemodel must be unique to match them to the net",
                )
            tensors[key] = arr
    return tensors


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
        # safetensors refuses tensors sharing memory (tied weights, views): copy those.
        if t.numel() > 0:
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen_storage:
                t = t.clone()
                ptr = t.untyped_storage().data_ptr()
            seen_storage.add(ptr)
        out[name] = t
    return out


def save_weights(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor | np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` to a safetensors file atomically and durably.

    The data goes to a temporary file in the destination folder, which is fsynced and
    then renamed over ``path`` (and the folder fsynced), so a crash leaves either the
    old file or the complete new one, never a torn file.
    """
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
    tmp = folder / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        save_file(saveable, tmp, metadata=meta)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except (OSError, SafetensorError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise DataError(
            f"cannot write weights: {reason}", _span(dest), hint="check free space and permissions"
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


def load_weights_with_metadata(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Like :func:`load_weights`, also returning the file's string metadata."""
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
    return tensors, metadata


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors weights file into CPU tensors (never unpickles anything)."""
    return load_weights_with_metadata(path)[0]


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


def load_net_weights(net: Any, path: str | os.PathLike[str], *, strict: bool) -> list[str]:
    """Load a ``.safetensors`` or ``.caffemodel`` file into a compiled net.

    Blobs are matched by ``<layer>.<blob>``; a matched blob of another shape is an error
    naming it (:func:`check_weights_fit`). ``strict``: every blob of the net must be in the
    file (evaluating); otherwise blobs the file lacks keep their fillers and blobs the net
    lacks are ignored (Caffe's ``CopyTrainedLayersFrom``, for fine-tuning). Returns the
    keys loaded.
    """
    p = os.fspath(path)
    if p.endswith(".solverstate.safetensors"):
        raise DataError(
            "this is a snapshot's solver state, not weights",
            Span(p),
            hint="give the snapshot's weights file (the .safetensors without .solverstate), "
            "or use --resume to continue training",
        )
    tensors: Mapping[str, Any]
    if p.endswith(".caffemodel"):
        tensors = caffemodel_to_tensors(p)
    else:
        tensors = load_weights(p)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if strict:
        check_weights_fit(expected, {k: v for k, v in got.items() if k in expected}, path=p)
    else:
        common = [k for k in got if k in expected]
        if not common:
            check_weights_fit(expected, got, path=p)  # nothing matches: list everything
        check_weights_fit({k: expected[k] for k in common}, {k: got[k] for k in common}, path=p)
    loaded = {k: v for k, v in tensors.items() if k in expected}
    net.load_state_dict(
        {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(v) for k, v in loaded.items()},
        strict=False,
    )
    return list(loaded)
