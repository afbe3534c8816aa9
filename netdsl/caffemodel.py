"""Reading Caffe's binary ``.caffemodel`` files: the trained blobs of each layer, checked.

Writing one (:func:`encode_caffemodel`) is the reverse, for ``netdsl weights export``.

A caffemodel is a ``NetParameter`` protobuf (V2 ``layer``, V1 ``layers`` or V0) whose
layers carry ``BlobProto`` blobs. Nothing in the file is trusted: a file of another kind
(a pickle, a zip, safetensors, text) is refused for what it is, before protobuf sees it,
and every blob's shape is checked against Caffe's limits and against its data, in Python
integers and before the first array is made. :mod:`netdsl.weights` re-exports this
module's functions; netdsl never unpickles anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from netdsl import caffe_pb
from netdsl.diagnostics import DataError, Span, did_you_mean

__all__ = ["CaffeLayerBlobs", "blob_names", "read_caffemodel", "caffemodel_to_tensors",
           "encode_caffemodel", "to_caffe_layers"]


_CAFFE_HINT = (
    "expected a binary .caffemodel (a NetParameter protobuf with trained blobs); "
    "a .prototxt describes the net but holds no weights"
)


_TEXT_HINT = ("this is a text file (a .prototxt?), which describes a net but holds no "
              "weights: give the binary .caffemodel that training wrote")


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

#: Caffe's limits on a blob (blob.hpp: ``kMaxBlobAxes``; ``Blob::Reshape`` checks that the
#: count fits an ``int``).
_MAX_AXES = 32
_INT_MAX = 2**31 - 1
_LEGACY_DIMS = ("num", "channels", "height", "width")


def _blob_shape(blob: _BlobProto, where: str, layer_type: str, index: int, path: Path) -> (
        tuple[int, ...]):
    """A blob's shape, checked against Caffe's limits and against its data, from the
    message's fields alone: the product of the dims is a Python integer (no int64 wrap),
    and nothing of the blob's size is allocated before it is known to be right."""
    legacy = any(blob.HasField(f) for f in _LEGACY_DIMS)
    dims = [int(getattr(blob, f)) for f in _LEGACY_DIMS] if legacy else [int(d) for d in
                                                                          blob.shape.dim]

    def refuse(what: str, hint: str = "the file is corrupt, or was not written by Caffe") -> (
            DataError):
        return DataError(f"{where} {what}", _span(path), hint=hint)

    if len(dims) > _MAX_AXES:
        raise refuse(f"has {len(dims)} axes; Caffe allows at most {_MAX_AXES}")
    if any(d < 0 for d in dims):
        raise refuse(f"has a negative dimension in its shape {dims}")
    big = next((d for d in dims if d > _INT_MAX), None)
    if big is not None:
        raise refuse(f"has a dimension of {big:,} in its shape {dims}, over Caffe's limit of "
                     f"{_INT_MAX:,}")
    count = math.prod(dims)  # a Python integer: no overflow
    if count > _INT_MAX:
        raise refuse(f"has the shape {dims}: {count:,} values, over Caffe's limit of "
                     f"{_INT_MAX:,} per blob")
    # Caffe's Blob::FromProto reads double_data when there is any, else data.
    stored = len(blob.double_data) if len(blob.double_data) > 0 else len(blob.data)
    if stored != count:
        raise refuse(f"has {stored:,} values but its shape {dims} needs {count:,}",
                     "the file is truncated or corrupt, or holds no trained data")
    return _legacy_shape(dims, layer_type, index) if legacy else tuple(dims)


def _blob_values(blob: _BlobProto, shape: tuple[int, ...]) -> np.ndarray:
    """The checked blob's values as a float32 array of ``shape``."""
    if len(blob.double_data) > 0:
        return np.asarray(blob.double_data, dtype=np.float64).astype(np.float32).reshape(shape)
    return np.asarray(blob.data, dtype=np.float32).reshape(shape)


def _foreign_format(head: bytes, size: int) -> tuple[str, str] | None:
    """(what it is, what to do) for a file that is certainly not a Caffe protobuf, from its
    first bytes; None when it may be one. No NetParameter starts like these: a pickle's
    0x80 0x02..0x05 and a zip's "PK" would be varint fields 32-80 and 10, which Caffe
    never writes first."""
    pickle_hint = ("netdsl never unpickles a file (unpickling can run any code): load it in "
                   "PyTorch yourself and save the state dict with safetensors.torch.save_file")
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle (a PyTorch .pt/.pth file?)", pickle_hint
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch .pt/.pth file?)", pickle_hint
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= size:
        return "a safetensors file", "give it a .safetensors name"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file", "netdsl reads Caffe's binary protobuf models, not HDF5 ones"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array file", _CAFFE_HINT
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file", "decompress it first"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c in "\t\r\n" for c in text)


def read_caffemodel(path: str | os.PathLike[str]) -> list[CaffeLayerBlobs]:
    """Read the parameter blobs of a binary ``.caffemodel``, layer by layer.

    Handles V2 (``layer``), V1 (``layers`` with enum types) and V0 (``layers`` wrapping
    a ``V0LayerParameter``) nets; types come back as V2 strings. Layers without blobs
    are left out. Blobs come back as float32 arrays in Caffe's shapes. Every blob of the
    file is checked (:func:`_blob_shape`) before the first array is made, and a file of
    another kind (a pickle, a zip, safetensors, text) is refused for what it is.
    """
    p = Path(path)
    raw = _read_user_file(p, "Caffe model")
    foreign = _foreign_format(raw[:64], len(raw))
    if foreign is not None:
        raise DataError(f"not a Caffe binary model: this is {foreign[0]}", _span(p),
                        hint=foreign[1])
    text = _looks_like_text(raw[:256])
    net = caffe_pb.NetParameter()
    try:
        net.ParseFromString(raw)
    except (DecodeError, ValueError, RuntimeError) as e:
        reason = str(e).rsplit(": ", 1)[-1]  # protobuf's own words, without the type name
        raise DataError(
            f"not a Caffe binary model: protobuf cannot parse it ({reason})", _span(p),
            hint=_TEXT_HINT if text else "the file is truncated or corrupt, or is not a "
            ".caffemodel at all; " + _CAFFE_HINT,
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

    checked: list[tuple[str, str, list[_BlobProto], list[tuple[int, ...]]]] = []
    for i, (name, ltype, blobs) in enumerate(entries):
        if not blobs:
            continue
        if not name:
            raise DataError(
                f"layer #{i} (type '{ltype}') has weights but no name", _span(p), hint=_CAFFE_HINT
            )
        names = blob_names(ltype, len(blobs))
        shapes = [_blob_shape(b, f"layer '{name}' blob '{names[j]}' (#{j})", ltype, j, p)
                  for j, b in enumerate(blobs)]
        checked.append((name, ltype, blobs, shapes))
    if not checked:
        raise DataError("the Caffe model holds no layers with weights", _span(p),
                        hint=_TEXT_HINT if text else _CAFFE_HINT)
    # Every blob is known to be sound: only now are the arrays made.
    return [CaffeLayerBlobs(name, ltype, [_blob_values(b, s) for b, s in
                                          zip(blobs, shapes, strict=True)])
            for name, ltype, blobs, shapes in checked]


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


# --------------------------------------------------------------------------- writing
#
# Encoded by hand (protobuf's wire format is simple), because a blob's values go in as
# one ``bytes`` copy of the array instead of a Python float per value: AlexNet's 61M
# values take a fraction of a second, where ``RepeatedScalarField.extend`` takes tens.
# The field numbers are caffe.proto's, as :mod:`netdsl.caffe_pb` declares them; the tests
# parse the result with those classes and with a decoder of their own.

_LEN = 2  # wire type of strings, messages and packed repeated fields


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, a message or a packed repeated field."""
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def _encode_blob(arr: np.ndarray) -> bytes:
    """``BlobProto { shape { dim... } data... }`` (fields 7 and 5, both as Caffe 1.0's
    Blob::ToProto writes them: the shape, then the float32 values, packed)."""
    dims = b"".join(_varint(int(d)) for d in arr.shape)  # BlobShape.dim: packed int64
    shape = _len_field(1, dims) if dims else b""
    values = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    return _len_field(7, shape) + _len_field(5, values)


def encode_caffemodel(name: str, layers: list[CaffeLayerBlobs]) -> bytes:
    """A binary ``NetParameter`` (V2: ``name`` 1, ``layer`` 100, each ``LayerParameter``
    with ``name`` 1, ``type`` 2 and ``blobs`` 7) holding ``layers``' blobs as float32.

    Caffe's ``Net::CopyTrainedLayersFrom`` matches these layers to its net by name and
    checks each blob's shape; it reads nothing else of a layer, so bottoms, tops and the
    layer parameters (which the net's prototxt holds) are not written.
    """
    parts = [_len_field(1, name.encode())] if name else []
    for layer in layers:
        body = _len_field(1, layer.name.encode())
        if layer.type:
            body += _len_field(2, layer.type.encode())
        body += b"".join(_len_field(7, _encode_blob(a)) for a in layer.blobs)
        parts.append(_len_field(100, body))
    return b"".join(parts)


def to_caffe_layers(arrays: Mapping[str, np.ndarray], layers: Sequence[tuple[str, str]] | None,
                    path: str | os.PathLike[str]) -> list[CaffeLayerBlobs]:
    """netdsl's ``<layer>.<blob>`` arrays as a caffemodel's layers, for
    :func:`encode_caffemodel`; ``path`` is the weights file the errors point at.

    ``layers``: the net's (name, type) in its order; each layer then gets its type and its
    blobs in Caffe's order (``LayerType.blobs``), and a layer the net lacks, or a blob its
    type does not have, is an error. Without it the layers and blobs keep ``arrays``'
    order (netdsl writes Caffe's) and no type: Caffe does not need one to copy weights,
    but ``netdsl weights import`` then names the blobs ``blob0``, ``blob1``...
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in arrays.items():
        if arr.dtype.kind != "f":
            raise DataError(f"'{key}' holds {arr.dtype} values; a caffemodel holds float blobs",
                            _span(path), hint="give the weights of a net, not a solver state")
        layer, _, blob = key.rpartition(".")
        if not layer:
            raise DataError(f"'{key}' is not named <layer>.<blob>", _span(path),
                            hint="netdsl's weight files name each blob after its layer")
        groups.setdefault(layer, {})[blob] = arr
    if layers is None:
        return [CaffeLayerBlobs(name, "", list(g.values())) for name, g in groups.items()]
    types = dict(layers)
    strangers = [name for name in groups if name not in types]
    if strangers:
        near = did_you_mean(strangers[0], list(types))
        raise DataError(
            f"the weights hold layers that the net does not have: {', '.join(strangers)}",
            _span(path), hint=near or "were these weights trained for this net?")
    out: list[CaffeLayerBlobs] = []
    for name, ltype in layers:
        g = groups.pop(name, None)
        if g is None:
            continue
        want = blob_names(ltype, len(g))
        if set(g) != set(want):
            raise DataError(
                f"layer '{name}' has the blobs {', '.join(g)}, but a {ltype} layer has "
                f"{', '.join(want)} in a caffemodel", _span(path),
                hint="were these weights trained for this net?")
        out.append(CaffeLayerBlobs(name, ltype, [g[b] for b in want]))
    return out
