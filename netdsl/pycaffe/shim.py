"""The ``caffe`` module that a Caffe Python layer's ``import caffe`` finds, without Caffe.

A Caffe Python layer (``type: "Python"``, ``python_param { module layer param_str }``) is
a class in the user's own module::

    import caffe
    import numpy as np

    class EuclideanLossLayer(caffe.Layer):
        def setup(self, bottom, top): ...
        def reshape(self, bottom, top): top[0].reshape(1)
        def forward(self, bottom, top): top[0].data[...] = ...
        def backward(self, top, propagate_down, bottom): bottom[0].diff[...] = ...

This module is what such a class needs of pycaffe, and no more: :class:`Layer` (the base
class, with ``param_str``, ``phase`` and ``blobs``), :class:`Blob` (``data`` and ``diff``
as numpy arrays, ``reshape(*shape)``, ``count``, ``shape``, ``num``/``channels``/
``height``/``width``), the phases :data:`TRAIN` and :data:`TEST`, and Caffe's mode
switches as no-ops. It follows pycaffe's bindings (BVLC/caffe python/caffe/_caffe.cpp,
the ``Blob`` and ``Layer`` classes) and ``Blob::Reshape`` / ``Blob::LegacyShape``
(src/caffe/blob.cpp).

It is put in ``sys.modules["caffe"]`` only while netdsl imports or runs Python layers,
and only where no real Caffe is installed (:func:`netdsl.pycaffe.provided`): an installed
pycaffe is never shadowed. No torch here: ``netdsl shapes`` runs Python layers without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt

__all__ = ["TEST", "TRAIN", "Blob", "Layer", "LayerParameter", "Phase", "PythonParameter",
           "set_device", "set_mode_cpu", "set_mode_gpu"]


class Phase(int):
    """Caffe's phase: equal to its number (``self.phase == 0``, as BVLC's PythonLayer sets
    it) and printed as its name (``str(self.phase) == "TRAIN"``, as the boost enum of the
    Faster R-CNN fork prints, which its layers use as a config key)."""

    _names = ("TRAIN", "TEST")

    @property
    def name(self) -> str:
        return self._names[int(self)]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"caffe.{self.name}"


TRAIN = Phase(0)
TEST = Phase(1)


def set_mode_cpu() -> None:
    """A no-op: netdsl decides where layers run."""


def set_mode_gpu() -> None:
    """A no-op: netdsl decides where layers run."""


def set_device(device_id: int) -> None:
    """A no-op: netdsl decides where layers run."""


FloatArray = npt.NDArray[Any]


class Blob:
    """A Caffe blob: a shape and two arrays of it, ``data`` and ``diff``.

    ``data`` and ``diff`` are views of buffers that :meth:`reshape` keeps while the new
    count fits (Caffe reallocates only to grow), so a layer writes through them with
    ``top[0].data[...] = x``. A new blob has no shape and count 0, as Caffe's ``Blob()``.
    Blobs hold float32, as Caffe's do; netdsl uses float64 blobs for float64 tensors.
    """

    def __init__(self, shape: Iterable[int] | None = None, dtype: npt.DTypeLike = np.float32
                 ) -> None:
        self._dtype = np.dtype(dtype)
        self._shape: tuple[int, ...] = ()
        self._count = 0
        self._data: FloatArray = np.zeros(0, self._dtype)
        self._diff: FloatArray = np.zeros(0, self._dtype)
        if shape is not None:
            self.reshape(*shape)

    @classmethod
    def holding(cls, array: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> Blob:
        """A blob of ``array``'s shape holding a copy of it (its diff zero)."""
        arr = np.asarray(array)
        blob = cls(arr.shape, dtype if dtype is not None else arr.dtype)
        blob.data[...] = arr
        return blob

    def reshape(self, *shape: SupportsIndex | Iterable[SupportsIndex]) -> None:
        """``blob.reshape(n, c, h, w)`` (pycaffe's form; a single list is accepted too)."""
        if len(shape) == 1 and not isinstance(shape[0], SupportsIndex):
            shape = tuple(shape[0])
        dims: list[int] = []
        for d in shape:
            if not isinstance(d, SupportsIndex):
                raise TypeError(f"Blob.reshape takes integer dimensions, got {d!r}")
            dims.append(int(d.__index__()))
        if any(d < 0 for d in dims):
            raise ValueError(f"Blob.reshape: negative dimension in {dims}")
        self._shape = tuple(dims)
        self._count = math.prod(dims)
        if self._count > self._data.size:
            self._data = np.zeros(self._count, self._dtype)
            self._diff = np.zeros(self._count, self._dtype)

    @property
    def data(self) -> FloatArray:
        return self._data[: self._count].reshape(self._shape if self._count else (0,))

    @property
    def diff(self) -> FloatArray:
        return self._diff[: self._count].reshape(self._shape if self._count else (0,))

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def count(self) -> int:
        return self._count

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    def _legacy(self, index: int) -> int:
        """Caffe's Blob::LegacyShape: the 4-D view, 1 for a missing axis."""
        if len(self._shape) > 4:
            raise ValueError("num/channels/height/width are for blobs of at most 4 axes, "
                             f"this one has shape {list(self._shape)}")
        if index >= len(self._shape) or index < -len(self._shape):
            return 1
        return self._shape[index]

    @property
    def num(self) -> int:
        return self._legacy(0)

    @property
    def channels(self) -> int:
        return self._legacy(1)

    @property
    def height(self) -> int:
        return self._legacy(2)

    @property
    def width(self) -> int:
        return self._legacy(3)

    def __repr__(self) -> str:
        return f"<caffe.Blob {list(self._shape)} {self._dtype}>"


class BlobVec(list[Blob]):
    """A layer's own blobs (pycaffe's ``Layer.blobs``), with ``add_blob(*shape)``."""

    def add_blob(self, *shape: int) -> None:
        self.append(Blob(shape))


class PythonParameter:
    """Caffe's PythonParameter (the ``python_param { }`` block)."""

    def __init__(self, module: str = "", layer: str = "", param_str: str = "",
                 share_in_parallel: bool = False) -> None:
        self.module, self.layer = module, layer
        self.param_str, self.share_in_parallel = param_str, share_in_parallel


class LayerParameter:
    """What Caffe's layer factory hands a Python layer's constructor: the layer's name,
    type, bottoms, tops, phase and ``python_param``."""

    def __init__(self, name: str, type: str, bottom: Iterable[str], top: Iterable[str],
                 phase: Phase, python_param: PythonParameter,
                 loss_weight: Iterable[float] = ()) -> None:
        self.name, self.type = name, type
        self.bottom, self.top = list(bottom), list(top)
        self.phase, self.python_param = phase, python_param
        self.loss_weight = list(loss_weight)


class Layer:
    """The base class of Python layers (pycaffe's ``caffe.Layer``).

    Before ``setup`` the layer's ``param_str`` (also ``param_str_``, the name the Faster
    R-CNN fork's layers read) and ``phase`` are set, as Caffe's PythonLayer::LayerSetUp
    does. A subclass defines ``setup``, ``reshape``, ``forward`` and, where gradients
    flow through it, ``backward``.
    """

    param_str: str
    param_str_: str
    phase: Phase

    def __init__(self, param: LayerParameter | None = None) -> None:
        self.blobs = BlobVec()
        self.param_str = self.param_str_ = param.python_param.param_str if param else ""
        self.phase = param.phase if param else TRAIN
        self._type = param.type if param else ""

    @property
    def type(self) -> str:
        """The layer's type as the net names it (Caffe's PythonLayer::type())."""
        return getattr(self, "_type", "")

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Read ``param_str``, check the bottoms, shape the tops (Caffe's LayerSetUp)."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Shape the tops for the bottoms' shapes; runs before every forward."""
