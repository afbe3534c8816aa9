"""Import a Caffe Python layer and drive it on numpy blobs, as Caffe's PythonLayer does.

Caffe's layer factory (BVLC/caffe src/caffe/layer_factory.cpp, ``GetPythonLayer``)
imports ``python_param.module``, calls ``python_param.layer`` with the LayerParameter,
and PythonLayer (include/caffe/layers/python_layer.hpp) sets ``param_str`` and ``phase``
before calling ``setup(bottom, top)``; ``reshape`` runs before every ``forward``, and
``backward(top, propagate_down, bottom)`` reads the tops' ``diff`` and writes the
bottoms'. :class:`PythonLayer` does the same on :class:`~netdsl.pycaffe.shim.Blob`\\ s:

    layer = PythonLayer(import_layer_class("pyloss", "EuclideanLossLayer"), params, type_name)
    layer.top_shapes([(10, 5), (10, 5)])          # setup + reshape -> [(1,)]
    bottom, top = layer.forward([a, b])            # numpy arrays in, blobs out
    diffs = layer.backward(bottom, top, [np.ones(1)], [True, False])

Errors in the user's code, or a module that cannot be imported, are :class:`UserCodeError`
with a message, a hint and the place in the user's file; the caller turns them into a
diagnostic at the layer (torch-free: the shape rule uses this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..diagnostics import did_you_mean
from ..usercode import UserCodeError, import_user_module, raised_here
from . import provided, shim

__all__ = ["PythonLayer", "UserCodeError", "import_layer_class"]


def _nearby(module: str, spec_path: str | None) -> str | None:
    """The spec's folder, if the module is a file or package there."""
    if not spec_path or spec_path.startswith("<"):
        return None
    here = Path(spec_path).resolve().parent
    rel = Path(*module.split("."))
    if (here / rel).with_suffix(".py").is_file() or (here / rel / "__init__.py").is_file():
        return str(here)
    return None


def import_layer_class(module: str, layer: str, spec_path: str | None = None) -> type:
    """``python_param``'s ``layer`` class from its ``module`` (imported once, from
    ``sys.path``, with the ``caffe`` shim provided where no Caffe is installed)."""
    if not module:
        raise UserCodeError("python_param has no module",
                            'name the module holding the layer: module: "pyloss"',
                            field="module")
    if not layer:
        raise UserCodeError("python_param has no layer",
                            'name the layer class in the module: layer: "EuclideanLossLayer"',
                            field="layer")
    folder = _nearby(module, spec_path)
    hint = (f"{module.replace('.', '/')}.py is next to the spec: run with PYTHONPATH={folder}"
            if folder else f"add the folder holding {module.replace('.', '/')}.py to "
            "PYTHONPATH (PYTHONPATH=/path/to/layers netdsl ...), as Caffe needs")
    with provided():
        mod = import_user_module(module, "Python layer module", hint)
    cls = getattr(mod, layer, None)
    where = getattr(mod, "__file__", None) or module
    if cls is None:
        classes = [k for k, v in vars(mod).items() if isinstance(v, type)]
        raise UserCodeError(f"module '{module}' ({where}) has no class '{layer}'",
                            did_you_mean(layer, classes), field="layer")
    if not isinstance(cls, type):
        raise UserCodeError(f"'{module}.{layer}' ({where}) is not a class", field="layer")
    return cls


def _construct(cls: type, param: shim.LayerParameter) -> Any:
    """``cls(param)``, as Caffe's factory calls it. A subclass of an installed pycaffe's
    Layer (whose constructor wants a protobuf) is made without its constructor: its
    Python methods are what runs."""
    make: Any = cls
    if issubclass(cls, shim.Layer):
        return make(param)
    try:
        return make(param)
    except TypeError:
        return cls.__new__(cls)


class PythonLayer:
    """One instance of a user's Python layer, as one Caffe Net holds it.

    ``params`` is the layer's ``python_param`` (an object with ``module``, ``layer``,
    ``param_str`` and ``share_in_parallel``), ``type_name`` the type the net names.
    ``setup`` runs once, on the first blobs the layer sees; tops keep their shape from one
    forward to the next, as Caffe's do.
    """

    def __init__(self, cls: type, params: Any, type_name: str, name: str = "",
                 bottoms: Sequence[str] = (), tops: Sequence[str] = (),
                 phase: shim.Phase = shim.TRAIN) -> None:
        self.cls, self.n_tops = cls, len(tops)
        self.what = f"{cls.__module__}.{cls.__qualname__}"
        param = shim.LayerParameter(name, type_name, bottoms, tops, phase, shim.PythonParameter(
            params.module, params.layer, params.param_str, params.share_in_parallel))
        self.param_str, self.phase = params.param_str, phase
        self.instance = self._call("__init__", _construct, cls, param)
        self._tops: list[shim.Blob] | None = None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            with provided():
                return fn(*args)
        except UserCodeError:
            raise
        except Exception as e:
            raise UserCodeError(f"{self.what}.{what} raised {type(e).__name__}: {e}",
                                None, raised_here(e), "module") from e

    def set_phase(self, phase: shim.Phase) -> None:
        self.phase = phase
        self.instance.phase = phase

    def _setup(self, bottom: list[shim.Blob], dtype: npt.DTypeLike) -> list[shim.Blob]:
        """Caffe's PythonLayer::LayerSetUp, then Reshape: the tops it shapes."""
        inst = self.instance
        inst.param_str = inst.param_str_ = self.param_str
        inst.phase = self.phase
        top = [shim.Blob(dtype=dtype) for _ in range(self.n_tops)]
        if hasattr(inst, "setup"):
            self._call("setup", inst.setup, bottom, top)
        return top

    def _reshape(self, bottom: list[shim.Blob], top: list[shim.Blob]) -> None:
        if hasattr(self.instance, "reshape"):
            self._call("reshape", self.instance.reshape, bottom, top)

    def top_shapes(self, bottoms: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """The tops' shapes after ``setup`` and ``reshape`` on zero blobs of ``bottoms``."""
        bottom = [shim.Blob(b) for b in bottoms]
        top = self._setup(bottom, np.float32)
        self._reshape(bottom, top)
        for i, t in enumerate(top):
            if not t.shape and t.count == 0:
                raise UserCodeError(
                    f"{self.what}: setup and reshape left top {i} without a shape",
                    "call top[i].reshape(...) in setup or reshape, as Caffe layers must for "
                    "the layers after them")
        return [t.shape for t in top]

    def forward(self, bottoms: Sequence[npt.NDArray[Any]]
                ) -> tuple[list[shim.Blob], list[shim.Blob]]:
        """Bottoms as blobs of these arrays; ``reshape`` then ``forward``; the blobs (the
        state ``backward`` needs). float64 arrays make float64 blobs, others float32."""
        wide = any(a.dtype == np.float64 for a in bottoms)
        dtype = np.float64 if wide else np.float32
        bottom = [shim.Blob.holding(a, dtype) for a in bottoms]
        if self._tops is None:
            top = self._setup(bottom, dtype)
        else:  # tops keep their shape and values between calls, as Caffe's blobs do
            top = [shim.Blob.holding(t.data, dtype) if t.count else shim.Blob(t.shape, dtype)
                   for t in self._tops]
        self._reshape(bottom, top)
        if not hasattr(self.instance, "forward"):
            raise UserCodeError(f"{self.what} has no forward(bottom, top)")
        self._call("forward", self.instance.forward, bottom, top)
        self._tops = top
        return bottom, top

    def backward(self, bottom: list[shim.Blob], top: list[shim.Blob],
                 top_diffs: Sequence[npt.NDArray[Any]], propagate_down: Sequence[bool]
                 ) -> list[npt.NDArray[Any]]:
        """The bottoms' diffs from the tops' (the blobs are those ``forward`` returned)."""
        if not hasattr(self.instance, "backward"):
            raise UserCodeError(
                f"{self.what} has no backward(top, propagate_down, bottom), but its bottoms "
                "need gradients", "define backward, or stop the gradient before the layer "
                "(propagate_down: false, or lr_mult: 0 on the layers below)")
        for t, d in zip(top, top_diffs, strict=True):
            t.diff[...] = np.asarray(d).reshape(t.diff.shape)
        for b in bottom:
            b.diff[...] = 0
        self._call("backward", self.instance.backward, top, list(propagate_down), bottom)
        return [b.diff.copy() for b in bottom]

