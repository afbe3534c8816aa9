"""A Caffe LMDB database of ``Datum`` records, as written by ``convert_imageset``.

Each value is a serialised ``caffe.Datum``: ``channels``, ``height``, ``width``, the
pixels as ``data`` bytes (``C, H, W`` uint8) or as ``float_data``, the ``label``, and
``encoded`` when ``data`` holds a whole JPEG/PNG file instead of raw pixels. Caffe stores
colour pixels in OpenCV's BGR order, and encoded images are decoded to BGR here too, so
everything a database yields is BGR; give ``mean_value`` in BGR order accordingly.

Records are read in key order (Caffe's keys are zero-padded indices such as
``00000042_path``), by random access, so the loader can shuffle them. Needs the ``lmdb``
package (``pip install lmdb``); the record format comes from :mod:`netdsl.caffe_pb`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from netdsl.diagnostics import DataError

from .base import Source, decode_image

__all__ = ["LmdbSource", "decode_datum"]


# py-lmdb refuses to open one environment twice in a process (say the TRAIN and TEST
# phases read the same database), so sources on the same path share it.
_ENVS: dict[str, list[Any]] = {}  # realpath -> [environment, number of users]


def _open_env(path: str) -> Any:
    key = os.path.realpath(path)
    if key in _ENVS:
        _ENVS[key][1] += 1
        return _ENVS[key][0]
    env = _open_new_env(path)
    _ENVS[key] = [env, 1]
    return env


def _release_env(path: str) -> None:
    key = os.path.realpath(path)
    entry = _ENVS.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _ENVS[key]
        entry[0].close()


def _open_new_env(path: str) -> Any:
    try:
        import lmdb
    except ImportError:
        raise DataError(
            f"reading the LMDB database {path} needs the 'lmdb' package",
            hint="pip install lmdb",
        ) from None
    if not os.path.exists(path):
        raise DataError(f"LMDB database not found: {path}")
    try:
        return lmdb.open(
            path,
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
            subdir=os.path.isdir(path),
            max_readers=1,
        )
    except lmdb.Error as e:
        raise DataError(
            f"cannot open LMDB database {path}: {e}",
            hint="Caffe's LMDB databases are folders holding data.mdb (and lock.mdb)",
        ) from None


def decode_datum(raw: bytes, what: str) -> tuple[np.ndarray, int]:
    """A serialised Datum as ``(array (C, H, W), label)``: uint8 BGR, or float32 data."""
    from google.protobuf.message import DecodeError

    from netdsl.caffe_pb import Datum

    d = Datum()
    try:
        d.ParseFromString(raw)
    except DecodeError as e:
        raise DataError(f"{what} is not a Caffe Datum record: {e}") from None
    if d.encoded:
        channels = 1 if d.channels == 1 else 3
        arr = decode_image(bytes(d.data), channels, what)
        if channels == 3:
            arr = np.ascontiguousarray(arr[::-1])  # Caffe decodes with OpenCV: BGR
        return arr, int(d.label)
    shape = (d.channels, d.height, d.width)
    size = int(np.prod(shape))
    if d.float_data:
        if len(d.float_data) != size or size == 0:
            raise DataError(
                f"{what}: float_data has {len(d.float_data)} values, but channels x height x "
                f"width is {' x '.join(map(str, shape))}"
            )
        return np.asarray(d.float_data, dtype=np.float32).reshape(shape), int(d.label)
    if len(d.data) != size or size == 0:
        raise DataError(
            f"{what}: data has {len(d.data)} bytes, but channels x height x width is "
            f"{' x '.join(map(str, shape))}"
        )
    return np.frombuffer(d.data, dtype=np.uint8).reshape(shape).copy(), int(d.label)


class LmdbSource(Source):
    """The ``Datum`` records of a Caffe LMDB database, in key order."""

    channel_order = "BGR"
    #: py-lmdb refuses an environment a forked child inherits: workers are spawned
    fork_safe = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._env = _open_env(self.path)
        self._txn: Any = self._env.begin(buffers=False)
        self._pid = os.getpid()
        self._closed = False
        try:
            self._keys: list[bytes] = list(self._txn.cursor().iternext(keys=True, values=False))
            if not self._keys:
                raise DataError(f"LMDB database is empty: {self.path}")
            first, _ = self.get(0)
        except BaseException:
            self.close()
            raise
        self.shape = first.shape
        if first.dtype == np.float32:
            self.pixel_max = 1.0
        if first.shape[0] == 1:
            self.channel_order = "L"

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self) -> dict[str, Any]:
        """A pickled copy (a spawned worker) opens the database itself on first use."""
        state = self.__dict__.copy()
        state["_env"], state["_txn"], state["_pid"] = None, None, -1
        return state

    def _own_txn(self) -> Any:
        """This process's read transaction: an LMDB environment must not be used across a
        fork, so a worker process (forked or spawned) opens its own, once."""
        if self._pid != os.getpid():
            self._env = _open_new_env(self.path)
            self._txn = self._env.begin(buffers=False)
            self._pid = os.getpid()
        return self._txn

    @property
    def native_channels(self) -> int:
        return int(self.shape[0])

    def get(self, i: int) -> tuple[np.ndarray, int]:
        i = self._check_index(i)
        if self._closed:
            raise ValueError(f"the LMDB source {self.path} has been closed")
        raw = self._own_txn().get(self._keys[i])
        if raw is None:  # the database changed under us
            raise DataError(f"{self.describe(i)} has vanished from the database")
        return decode_datum(raw, self.describe(i))

    def describe(self, i: int) -> str:
        key = self._keys[i].decode("utf-8", "replace")
        return f"record '{key}' of {self.path}"

    def close(self) -> None:
        """Release the database (it stays open while another source uses it)."""
        if self._txn is not None and not self._closed:
            self._txn.abort()
            self._txn = None
            if self._pid == os.getpid():
                _release_env(self.path)
        self._closed = True
