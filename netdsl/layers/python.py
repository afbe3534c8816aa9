"""Python (Caffe PythonLayer): a layer whose code is the user's own Python, run unmodified.

    layer { name: "loss" type: "Python" bottom: "pred" bottom: "label" top: "loss"
            python_param { module: "pyloss" layer: "EuclideanLossLayer" }
            loss_weight: 1 }

As in Caffe (BVLC/caffe include/caffe/layers/python_layer.hpp, src/caffe/
layer_factory.cpp ``GetPythonLayer``, src/caffe/proto/caffe.proto ``PythonParameter``),
``module`` is imported from ``sys.path`` (``PYTHONPATH``), ``layer`` names a class in it
deriving from ``caffe.Layer``, ``param_str`` is handed to it as ``self.param_str`` before
``setup``. Where no pycaffe is installed, ``import caffe`` finds netdsl's stand-in
(:mod:`netdsl.pycaffe`).

Shapes are the layer's own: ``setup`` then ``reshape`` run on zero-filled numpy blobs of
the bottoms' shapes (no torch), with ``self.phase`` the phase of the net being shaped
(TRAIN where none is known), as Caffe builds each phase's net on its own. A module that
cannot be imported is a diagnostic at ``python_param`` saying which module, where Python
looked and how to provide it; a layer without bottoms (a Python data layer) may instead
have its tops' shapes given with ``--input TOP=C,H,W``. Lowered, the layer's ``forward``
and ``backward`` run on the CPU as a ``torch.autograd.Function``
(:mod:`netdsl.pycaffe.kernel`). A Python layer has no learnable blobs in netdsl, and Caffe
makes it a loss only through ``loss_weight``, as here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fields import doc
from . import register
from .base import Arity, Kernel, LayerType, Shape, ShapeContext


@dataclass(frozen=True)
class PythonParams:
    """Caffe's PythonParameter (``python_param``)."""

    module: str = field(default="", metadata=doc("module holding the layer (on PYTHONPATH)"))
    layer: str = field(default="", metadata=doc("the layer class's name in the module"))
    param_str: str = field(default="", metadata=doc("handed to the layer as self.param_str"))
    share_in_parallel: bool = field(
        default=False, metadata=doc("Caffe: one instance for all GPUs (no effect)"))


@register
class Python(LayerType[PythonParams]):
    """A layer written in Python, run unmodified from PYTHONPATH (Caffe PythonLayer)."""

    bottoms = Arity(0)
    tops = Arity(0)
    fresh_output = True
    #: without bottoms, its tops' shapes may come from ``--input`` (shapes.py must let
    #: such names through; see the shape rule)
    takes_input_shapes = True
    Params = PythonParams

    def shape(self, p: PythonParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
              ) -> tuple[Shape, ...]:
        from ..pycaffe import shim
        from ..pycaffe.runner import PythonLayer, UserCodeError, import_layer_class

        phase = shim.TEST if ctx.phase is not None and ctx.phase.name == "TEST" else shim.TRAIN
        if not bottoms and ctx.tops and all(t in ctx.inputs for t in ctx.tops):
            return tuple((ctx.batch, *ctx.inputs[t]) for t in ctx.tops)
        try:
            cls = import_layer_class(p.module, p.layer, ctx.where("module").path)
            layer = PythonLayer(cls, p, self.name, ctx.layer, (), ctx.tops, phase)
            return tuple(layer.top_shapes(bottoms))
        except UserCodeError as e:
            hint = e.hint
            if not bottoms and ctx.tops:
                given = " ".join(f"--input {t}=C,H,W" for t in ctx.tops)
                hint = (f"{hint}; or " if hint else "") + f"give its tops' shapes: {given}"
            err = ctx.error(e.message, e.field or "module", hint)
            for note in e.notes:
                err.with_note(*note)
            raise err from e

    def lower(self, p: PythonParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..pycaffe.kernel import PythonLayerModule, user_error
        from ..pycaffe.runner import PythonLayer, UserCodeError, import_layer_class

        try:
            cls = import_layer_class(p.module, p.layer)
            layer = PythonLayer(cls, p, self.name, tops=tuple(f"top{i}" for i in range(len(tops))))
        except UserCodeError as e:
            raise user_error(e) from e
        return PythonLayerModule(layer)
