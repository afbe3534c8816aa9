"""The LayerType base class, shape types, the shape context and shared field types.

A layer type is one class in one file of this package. It declares its fields (a frozen
``Params`` dataclass), its blob-count contract, its shape rule in Caffe's arithmetic,
the shapes of its learnable blobs, its multiply-accumulate count, how it divides across
devices, its role, and its torch kernel. Nothing else in netdsl knows about a particular
type: the compiler, export and the runtime ask these hooks.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, Union

from ..diagnostics import Notes, ShapeError, Span, warn
from ..fields import CaffeEnum, doc

if TYPE_CHECKING:  # torch is imported only by lowering, never by parse/shapes
    import torch

    from ..ir import Phase

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
    FOLLOW = "follow"  # runs where its input is (shard for shard, if its Follow allows)
    REPLICATE = "replicate"  # whole layer on one device (the first one listed)


class Follow(enum.Enum):
    """How a FOLLOW layer runs on an input divided between devices."""

    ELEMENTWISE = "elementwise"  # each output element reads the same input element: any split
    CHANNELS = "channels"  # each channel of a 4-D blob on its own: a channel split
    NONE = "none"  # not separable: runs whole, on the device holding its input


@dataclass(frozen=True)
class Sharding:
    """What placement needs to know to divide one layer (``LayerType.sharding``).

    ``CHANNELS``: ``outputs`` entries along the tops' ``axis`` are divided evenly between
    the layer's devices; with ``groups`` > 1 every device gets whole groups and reads
    only those groups' input channels. ``FOLLOW`` with ``Follow.CHANNELS``: each shard
    also reads ``halo = (below, above)`` neighbouring channels of its input. A layer
    with ``computes=False`` (Silence) needs no device and moves nothing.
    """

    split: Split
    follow: Follow = Follow.NONE
    outputs: int = 0
    axis: int = 1
    groups: int = 1
    halo: tuple[int, int] = (0, 0)
    computes: bool = True
    outputs_field: str = "num_output"
    groups_field: str = "group"


class Role(enum.Enum):
    """What a layer is to the rest of netdsl: the compiler, export and the runtime ask
    this instead of naming types."""

    COMPUTE = "compute"  # an ordinary layer
    INPUT = "input"  # its tops are the net's inputs, fed by the caller
    GENERATOR = "generator"  # makes its tops itself, from nothing (DummyData)
    LOSS = "loss"  # its first top is a loss (loss_weight 1 by default)
    METRIC = "metric"  # scores predictions against labels (Accuracy)
    PROBABILITIES = "probabilities"  # turns scores into class probabilities (Softmax)
    SINK = "sink"  # reads blobs and makes nothing (Silence)


class FillerType(enum.Enum):
    constant = "constant"
    gaussian = "gaussian"
    uniform = "uniform"
    xavier = "xavier"
    msra = "msra"
    bilinear = "bilinear"
    positive_unitball = "positive_unitball"


class VarianceNorm(CaffeEnum):
    """FillerParameter.VarianceNorm (BVLC caffe.proto)."""

    FAN_IN = 0
    FAN_OUT = 1
    AVERAGE = 2


class Engine(CaffeEnum):
    """The ``Engine`` enum of Caffe's layer parameters (ConvolutionParameter, ...): the
    same three numbers in each. ``engine`` fields stay words (forks add engines) and read
    these numbers through ``doc(..., numbers=Engine)``."""

    DEFAULT = 0
    CAFFE = 1
    CUDNN = 2


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


#: The warnings shape rules gave in this process: (file, layer, message). Shapes are
#: worked out once per phase and again when lowering; each says a warning only once.
_WARNED: set[tuple[str, str, str]] = set()


def forget_warnings() -> None:
    """Let shape rules give again the warnings they already gave in this process (for a
    tool that reloads an edited file, and for tests)."""
    _WARNED.clear()


class ShapeContext:
    """What a shape rule may know beyond its params and bottom shapes.

    ``phase`` is the phase of the net being shaped (``net.phase``; None where no net is,
    as for a detached context): the rule of a layer whose shapes depend on it (a Python
    layer's ``setup``/``reshape`` reading ``self.phase``) asks it.
    """

    def __init__(
        self,
        layer: str,
        type_name: str,
        span: Span,
        field_spans: Mapping[str, Span],
        tops: tuple[str, ...],
        batch: int,
        inputs: Mapping[str, Shape],
        *,
        notes: Notes = (),
        quiet: bool = False,
        phase: Phase | None = None,
    ) -> None:
        self.layer = layer
        self.type_name = type_name
        self.span = span
        self.field_spans = field_spans
        self.tops = tops
        self.batch = batch
        self.inputs = inputs
        self.notes = notes  # where the layer came from (a repeat, an import...)
        self.quiet = quiet
        self.phase = phase

    @classmethod
    def detached(cls, type_name: str, layer: str = "?") -> ShapeContext:
        """A context for code that runs after shape inference succeeded (lowering): it
        says nothing, as shape inference already gave the layer's warnings."""
        return cls(layer, type_name, Span("<netdsl>"), {}, ("out",), 1, {}, quiet=True)

    def where(self, field_name: str | None = None) -> Span:
        """The span of a field; without one, the bottoms (most shape errors are about
        what the layer is given), else the whole layer."""
        if field_name and field_name in self.field_spans:
            return self.field_spans[field_name]
        return self.field_spans.get("bottom", self.span)

    def error(self, message: str, field: str | None = None, hint: str | None = None) -> ShapeError:
        return ShapeError(f"{self.type_name} '{self.layer}': {message}", self.where(field), hint)

    def warn(self, message: str, field: str | None = None, hint: str | None = None) -> None:
        """What Caffe logs and goes on after: a warning at the field (as for ``error``),
        given once per process for one layer of one file (a square window too large for
        both axes, each phase's shapes, lowering's all say it once)."""
        text = f"{self.type_name} '{self.layer}': {message}"
        key = (self.span.path, self.layer, text)
        if self.quiet or key in _WARNED:
            return
        _WARNED.add(key)
        warn(text, self.where(field), hint, self.notes)


@dataclass(frozen=True, eq=False)
class Call:
    """A stateless kernel: ``fn(*bottoms, **kwargs)``. The compiled graph calls ``fn``
    itself (one node, printed as ``fn(x, k=v)``), so ``fn`` must be a plain function of
    tensors; layers with parameters, buffers or a phase lower to a ``torch.nn.Module``."""

    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, *xs: Any) -> Any:
        return self.fn(*xs, **self.kwargs)


@dataclass(frozen=True)
class Alias:
    """The kernel of a layer whose every top *is* its one bottom (Split, a Concat of one
    blob): the compiled graph has no node for it."""


#: A lowered layer: a module (state or phase), a stateless call, or an alias.
Kernel = Union["torch.nn.Module", Call, Alias]

#: A layer type's params: the frozen dataclass it names as ``Params``.
P = TypeVar("P")


class LayerType(Generic[P]):
    """Base class: override what the type needs. Instances are stateless singletons.

    Everything netdsl knows about one type is here or in the type's own file: fields,
    blob counts, shape rule, learnable blobs and their Caffe layout, MACs, how it divides
    across devices (``sharding``), its role, and its torch kernel (``lower``).

    A type subclasses ``LayerType[ItsParams]`` and sets ``Params = ItsParams``: the type
    argument lets its hooks take ``p: ItsParams``; ``Params`` is what build constructs
    (a class variable cannot be typed by a type variable, so the two are said apart).
    """

    name: ClassVar[str] = ""
    caffe_names: ClassVar[tuple[str, ...]] = ()  # other spellings: V1 enum, aliases
    bottoms: ClassVar[Arity] = Arity.exact(1)
    tops: ClassVar[Arity] = Arity.exact(1)
    blobs: ClassVar[tuple[str, ...]] = ()  # Caffe's parameter blobs, in Caffe's order
    #: the Caffe fork the type comes from ("" for BVLC's own), as the reference lists it
    fork: ClassVar[str] = ""
    #: Axes of each blob in Caffe's layout; a blob saved with the deprecated 4-D
    #: num/channels/height/width fields is read right-aligned into these (Blob::ShapeEquals).
    legacy_blob_axes: ClassVar[tuple[int, ...]] = ()
    learned: ClassVar[bool] = True  # False: the blobs are statistics (BatchNorm), not learned
    role: ClassVar[Role] = Role.COMPUTE
    #: its first bottom holds class scores (so ``netdsl test`` can read predictions there)
    reads_class_scores: ClassVar[bool] = False
    #: a data layer whose examples the runtime can read (``data_source``)
    has_data_source: ClassVar[bool] = False
    #: a layer without bottoms whose tops' shapes ``--input`` may give (besides the
    #: INPUT-role layers, whose tops always may): a Caffe Python data layer
    takes_input_shapes: ClassVar[bool] = False
    #: its output is a new tensor that its backward does not need, so a following
    #: in-place layer (ReLU) may overwrite it
    fresh_output: ClassVar[bool] = False
    split: ClassVar[Split] = Split.FOLLOW
    follow: ClassVar[Follow] = Follow.NONE
    Params: ClassVar[type[Any]] = NoParams
    #: Caffe ``*_param`` blocks this type reads, where the name alone does not say it
    #: (``convolution_param`` for Convolution is implied; see ``reads_param_block``).
    caffe_params: ClassVar[tuple[str, ...]] = ()

    @property
    def is_data(self) -> bool:
        """Its tops are made from nothing: the net's inputs, or generated."""
        return self.role in (Role.INPUT, Role.GENERATOR)

    @property
    def is_input(self) -> bool:
        """Its tops are fed by the caller."""
        return self.role is Role.INPUT

    @property
    def is_loss(self) -> bool:
        return self.role is Role.LOSS

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

    def shape(self, p: P, bottoms: tuple[Shape, ...], ctx: ShapeContext) -> tuple[Shape, ...]:
        """Top shapes from bottom shapes; the default keeps the first bottom's shape."""
        return (bottoms[0],) * max(1, len(ctx.tops))

    def caffe_blob_names(self, count: int) -> tuple[str, ...]:
        """The names of a layer's ``count`` blobs in a Caffe model, in Caffe's order:
        ``blobs``, unless the count says which of the type's forms saved them."""
        return self.blobs

    def param_shapes(self, p: P, bottoms: tuple[Shape, ...]) -> dict[str, Shape]:
        """Caffe shapes of the learnable blobs, keyed by blob name."""
        return {}

    def macs(self, p: P, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        """Forward multiply-accumulates for the whole batch (0 for cheap layers)."""
        return 0

    def fillers(self, p: P) -> dict[str, Filler]:
        """Initialisers of the learnable blobs (blob name -> Filler)."""
        return {}

    def batch_size(self, p: P) -> int:
        """The batch a data layer's params give (0: none)."""
        return 0

    def data_source(self, p: P) -> dict[str, Any] | None:
        """How the runtime reads this data layer's examples: the fields of a ``data {}``
        section (``source``, ``path``, transforms...), or ``None`` where the layer names
        no source the runtime reads. Raises :class:`FieldError` for a bad field."""
        return None

    # --- placement and lowering ----------------------------------------------------------

    def sharding(self, p: P, bottoms: tuple[Shape, ...]) -> Sharding:
        """How this layer divides across its devices (see :class:`Sharding`)."""
        return Sharding(self.split, self.follow)

    def shard_params(self, p: P, outputs: tuple[int, int]) -> P:
        """The params of the shard of a CHANNELS layer that computes ``outputs``
        ``[start, stop)`` of the divided axis (as if it were a layer of its own)."""
        raise NotImplementedError(f"{self.name} does not divide its outputs")

    def lower(self, p: P, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> Kernel:
        """The kernel computing this layer on one device.

        Contract: called on the bottom tensors, a kernel returns one value per top: the
        tensor itself for a layer with one top, else a tuple. A module's learnable blobs
        are ``nn.Parameter`` attributes named as in ``blobs`` with Caffe's shapes (conv
        weight ``[out, in/group, kh, kw]``), left uninitialised: the compiler fills them
        from ``fillers()``. Caffe blobs that are not learned (BatchNorm's mean, variance,
        scale_factor) are buffers of the same names. ``module.training`` is the phase.
        Loss layers return the unweighted loss as a 0-d tensor; the compiler applies
        ``loss_weight``. ``bottoms``/``tops`` are the inferred shapes, batch included.
        """
        raise NotImplementedError(f"{self.name} has no torch lowering")

    def lower_shard(self, p: P, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...],
                    outputs: tuple[int, int] | None, halo: tuple[int, int]) -> Kernel:
        """The kernel of one shard: ``outputs`` is the range a CHANNELS shard computes,
        ``halo`` the neighbouring channels its first bottom carries (``sharding``);
        shapes are the shard's own."""
        return self.lower(p if outputs is None else self.shard_params(p, outputs), bottoms, tops)

    def lower_in_place(self, p: P) -> Kernel | None:
        """A kernel that overwrites its one bottom, if the type has one (Caffe's in-place
        ReLU); the compiler uses it where nothing can tell the difference."""
        return None


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
