"""Caffe Python layers, run unmodified: the ``caffe`` module they import, and their driver.

A Caffe net may use a layer written in Python::

    layer {
      name: "loss"  type: "Python"  bottom: "pred"  bottom: "label"  top: "loss"
      python_param { module: "pyloss"  layer: "EuclideanLossLayer"  param_str: "..." }
      loss_weight: 1
    }

netdsl runs it as Caffe does: ``module`` is imported from ``sys.path`` (set
``PYTHONPATH``), ``layer`` is a class in it deriving from ``caffe.Layer``, and the class's
``setup``/``reshape`` give the tops' shapes (``netdsl shapes`` calls them on numpy blobs
of the bottoms' shapes), ``forward``/``backward`` compute them (the compiled net wraps
them as a ``torch.autograd.Function``: the bottoms go to the CPU as numpy arrays, the
tops come back to the bottoms' device).

* :mod:`netdsl.pycaffe.shim` is the ``caffe`` module such a layer imports where no real
  pycaffe is installed: ``caffe.Layer``, blobs, ``caffe.TRAIN``/``caffe.TEST``.
  :func:`provided` puts it in ``sys.modules`` while netdsl imports or runs a layer, and
  never where ``import caffe`` would find a real Caffe.
* :mod:`netdsl.pycaffe.runner` imports the layer (with diagnostics that say which module,
  where Python looked, and how to provide it) and drives it on numpy blobs.
* :mod:`netdsl.pycaffe.kernel` is the torch side (imported by lowering only).

Nothing here imports torch at import time, so shapes need no torch.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from . import shim

__all__ = ["provided", "real_caffe_installed", "shim"]


def real_caffe_installed() -> bool:
    """Whether ``import caffe`` would find something other than netdsl's shim.

    A folder named ``caffe`` without an ``__init__.py`` on the path (a Caffe source tree
    in the current folder, say) is a namespace package, not pycaffe: it does not count.
    """
    current = sys.modules.get("caffe")
    if current is shim:
        return False
    if current is not None:
        return True
    try:
        spec = importlib.util.find_spec("caffe")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None


@contextmanager
def provided() -> Iterator[None]:
    """While inside, ``import caffe`` finds a Caffe: the real one if installed, else
    the shim (removed again on the way out; a layer module keeps the reference it
    took when it was imported)."""
    if real_caffe_installed() or sys.modules.get("caffe") is shim:
        yield
        return
    sys.modules["caffe"] = shim
    try:
        yield
    finally:
        if sys.modules.get("caffe") is shim:
            del sys.modules["caffe"]
