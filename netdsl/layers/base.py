"""The LayerType base class, shape types, the shape context and shared field types.

A layer type is one class in one file of this package. It declares its fields (a frozen
``Params`` dataclass), its blob-count contract, its shape rule in Caffe's arithmetic,
the shapes of its learnable blobs, its multiply-accumulate count, how it divides across
devices, and its torch lowering. Nothing else in netdsl knows about a particular type.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..diagnostics import ShapeError, Span
from ..fields import doc

if TYPE_CHECKING:  # torch is imported only by lowering, never by parse/shapes
    import torch

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Arity:
    """How many bottoms or tops a layer takes (Caffe's ExactNum/Min/MaxBottomBlobs)."""

    min: int = 0
    max: int | None = None

    @staticmethod
    def exact(n: int) -> Arity:
        return Arity(n, n)

    def ok(self, n: int) -> bool:
        return n >= self.min and (self.max is None or n <= self.max)

    def __str__(self) -> str:
        if self.max == self.min:
            return f"exactly {self.min}"
        if self.max is None:
            return f"at least {self.min}"
        return f"{self.min} to {self.max}"


class Split(enum.Enum):
    """How a layer divides across the devices it is placed on."""

    CHANNELS = "channels"  # output channels / neurons divided between devices
    FOLLOW = "follow"  # element-wise: runs where its input is, shard for shard
    REPLICATE = "replicate"  # whole layer on one device (the first one listed)


class FillerType(enum.Enum):
    constant = "constant"
    gaussian = "gaussian"
    uniform = "uniform"
    xavier = "xavier"
    msra = "msra"
    bilinear = "bilinear"
    positive_unitball = "positive_unitball"


class VarianceNorm(enum.Enum):
    FAN_IN = "FAN_IN"
    FAN_OUT = "FAN_OUT"
    AVERAGE = "AVERAGE"


@dataclass(frozen=True)
class Filler:
    """How a learnable blob is initialised (Caffe's FillerParameter)."""

    type: FillerType = field(default=FillerType.constant, metadata=doc("filler kind"))
    value: float = field(default=0.0, metadata=doc("constant value"))
    min: float = field(default=0.0, metadata=doc("uniform lower bound"))
    max: float = field(default=1.0, metadata=doc("uniform upper bound"))
    mean: float = field(default=0.0, metadata=doc("gaussian mean"))
    std: float = field(default=1.0, metadata=doc("gaussian standard deviation"))
    sparse: int = field(default=-1, metadata=doc("gaussian: non-zero inputs per output"))
    variance_norm: VarianceNorm = field(
        default=VarianceNorm.FAN_IN, metadata=doc("xavier/msra: fan used for the scale")
    )


@dataclass(frozen=True)
class NoParams:
    """For layer types without fields of their own."""


class ShapeContext:
    """What a shape rule may know beyond its params and bottom shapes."""

    def __init__(
        self,
        layer: str,
        type_name: str,
        span: Span,
        field_spans: Mapping[str, Span],
        tops: tuple[str, ...],
        batch: int,
        inputs: Mapping[str, Shape],
    ) -> None:
        self.layer = layer
        self.type_name = type_name
        self.span = span
        self.field_spans = field_spans
        self.tops = tops
        self.batch = batch
        self.inputs = inputs

    @classmethod
    def detached(cls, type_name: str, layer: str = "?") -> ShapeContext:
        """A context for code that runs after shape inference succeeded (lowering)."""
        return cls(layer, type_name, Span("<netdsl>"), {}, ("out",), 1, {})

    def where(self, field_name: str | None = None) -> Span:
        """The span of a field; without one, the bottoms (most shape errors are about
        what the layer is given), else the whole layer."""
        if field_name and field_name in self.field_spans:
            return self.field_spans[field_name]
        return self.field_spans.get("bottom", self.span)

    def error(self, message: str, field: str | None = None, hint: str | None = None) -> ShapeError:
        return ShapeError(f"{self.type_name} '{self.layer}': {message}", self.where(field), hint)


class LayerType:
    """Base class: override what the type needs. Instances are stateless singletons."""

    name: ClassVar[str] = ""
    caffe_names: ClassVar[tuple[str, ...]] = ()  # other spellings: V1 enum, aliases
    bottoms: ClassVar[Arity] = Arity.exact(1)
    tops: ClassVar[Arity] = Arity.exact(1)
    blobs: ClassVar[tuple[str, ...]] = ()  # Caffe's parameter blobs, in Caffe's order
    learned: ClassVar[bool] = True  # False: the blobs are statistics (BatchNorm), not learned
    is_data: ClassVar[bool] = False  # its tops are the net's inputs
    is_loss: ClassVar[bool] = False  # its first top has loss_weight 1 by default
    split: ClassVar[Split] = Split.FOLLOW
    Params: ClassVar[type] = NoParams
    #: Caffe ``*_param`` blocks this type reads, where the name alone does not say it
    #: (``convolution_param`` for Convolution is implied; see ``reads_param_block``).
    caffe_params: ClassVar[tuple[str, ...]] = ()

    def reads_param_block(self, block: str) -> bool:
        """Whether Caffe would read this ``<kind>_param`` block for this layer type.

        Caffe ignores the param blocks of other types, so its files may carry stray ones
        (the shared VGG16 has an image_data_param on an Input layer).
        """
        if block in self.caffe_params or block == "transform_param":
            return True
        stem = block.removesuffix("_param").replace("_", "").lower()
        return stem == self.name.lower() or (self.is_loss and block == "loss_param")

    @property
    def doc(self) -> str:
        return (self.__doc__ or "").strip().splitlines()[0]

    def shape(self, p: Any, bottoms: tuple[Shape, ...], ctx: ShapeContext) -> tuple[Shape, ...]:
        """Top shapes from bottom shapes; the default keeps the first bottom's shape."""
        return (bottoms[0],) * max(1, len(ctx.tops))

    def param_shapes(self, p: Any, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        """Caffe shapes of the learnable blobs, keyed by blob name."""
        return {}

    def macs(self, p: Any, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        """Forward multiply-accumulates for the whole batch (0 for cheap layers)."""
        return 0

    def fillers(self, p: Any) -> dict[str, Filler]:
        """Initialisers of the learnable blobs (blob name -> Filler)."""
        return {}

    def lower(self, p: Any, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> torch.nn.Module:
        """The torch module computing this layer on one device.

        Contract: ``forward(*bottom_tensors)`` returns a tuple with one tensor per top.
        Learnable blobs are ``nn.Parameter`` attributes named as in ``blobs`` with Caffe's
        shapes (conv weight ``[out, in/group, kh, kw]``), left uninitialised: the compiler
        fills them from ``fillers()``. Caffe blobs that are not learned (BatchNorm's
        mean, variance, scale_factor) are buffers of the same names. ``module.training``
        is the phase (Dropout, BatchNorm's use_global_stats default). Loss layers return
        the unweighted loss as a 0-d tensor; the compiler applies ``loss_weight``.
        ``bottoms``/``tops`` are the inferred shapes, batch included.
        """
        raise NotImplementedError(f"{self.name} has no torch lowering")


def count(shape: Shape) -> int:
    return math.prod(shape)


def spatial_pair(
    ctx: ShapeContext,
    generic: tuple[int, ...],
    h: int | None,
    w: int | None,
    what: str,
    default: int | None,
    n_spatial: int = 2,
) -> tuple[int, ...]:
    """Caffe's `kernel_size` / `kernel_h`+`kernel_w` resolution (also pad, stride, dilation).

    Either the generic repeated field (one value for every spatial axis, or one per axis)
    or the _h/_w pair, never both, as conv_layer / pooling_layer SetUp insist.
    """
    if h is not None or w is not None:
        if generic:
            raise ctx.error(f"give either {what} or {what}_h/{what}_w, not both", f"{what}_h")
        if h is None or w is None:
            raise ctx.error(f"{what}_h and {what}_w must be given together", f"{what}_h")
        if n_spatial != 2:
            raise ctx.error(f"{what}_h/{what}_w only work for 2-D inputs", f"{what}_h")
        return (h, w)
    if not generic:
        if default is None:
            raise ctx.error(f"needs {what} (or {what}_h and {what}_w)")
        return (default,) * n_spatial
    if len(generic) == 1:
        return generic * n_spatial
    if len(generic) != n_spatial:
        raise ctx.error(
            f"{what} has {len(generic)} values for {n_spatial} spatial axes", what
        )
    return tuple(generic)


def canonical_axis(axis: int, ndim: int, ctx: ShapeContext, field_name: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise ctx.error(f"axis {axis} is out of range for a {ndim}-D blob", field_name)
    return axis % ndim
