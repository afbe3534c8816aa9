"""Caffe's weight fillers (``include/caffe/filler.hpp``) as seeded torch operations.

``fill_(tensor, filler, generator)`` fills one blob in place the way Caffe's filler of
the same settings does. Random values are always drawn in float32 on the CPU from the
given ``torch.Generator`` and then copied into the tensor, so a blob gets the same
values whatever its device or dtype. ``fill_blobs`` fills a whole net's blobs from one
generator in a fixed order (layer order, then Caffe's blob order), which is what makes
two compiles of one spec with one seed, on one device or split across several, start
from identical weights.

Caffe details kept on purpose:

* fan-in is ``count / shape[0]`` and fan-out ``count / shape[1]``, in integer
  arithmetic (``int fan_in = blob->count() / blob->shape(0)``), for xavier and msra;
  ``AVERAGE`` is ``(fan_in + fan_out) / 2``. For an InnerProduct weight (out, in) this
  is the usual fan-in; for a convolution weight (out, in/group, kh, kw) too.
* gaussian ``sparse``: each weight is kept with probability ``sparse / shape[0]``
  (Caffe's code says "mean number of non-zero input weights per output", but divides
  by the number of outputs, ``blob->shape(0)``; we reproduce the code).
* bilinear: Caffe 1.0's ``c = (k - 1) / (2 f)`` with ``f = ceil(k / 2)``; the same
  kernel for every (out, in) pair.
* ``sparse`` on any filler but gaussian is an error, as Caffe's ``CHECK_EQ`` makes it.

Every setting Caffe's fillers CHECK is a :class:`FillerProblem` (:func:`problem`), which
the shape stage reports at the filler's field, so a net ``shapes`` accepts fills. This
module imports torch only in the functions that fill (``shapes`` runs without torch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .layers.base import Filler, FillerType, VarianceNorm

if TYPE_CHECKING:
    import torch

__all__ = [
    "FLT_MAX", "FillerError", "FillerProblem", "fan_in_out", "fill_", "fill_blobs", "generator",
    "msra_std", "problem", "xavier_scale",
]

#: The largest finite float32: Caffe's fillers take their settings as ``Dtype`` (float).
FLT_MAX = 3.4028234663852886e38


class FillerError(ValueError):
    """A filler that cannot fill the blob it is given (Caffe would abort on a CHECK)."""


class FillerProblem(FillerError):
    """A filler setting Caffe's filler (or its random number generator) CHECKs, with the
    Filler field it is about (``std``, ``min``, ...) and a hint."""

    def __init__(self, message: str, field: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.field, self.hint = field, hint


def fan_in_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """Caffe's integer fan-in (``count / shape[0]``) and fan-out (``count / shape[1]``)."""
    n = math.prod(shape)
    if not shape or n == 0:
        raise FillerError(f"cannot compute fans of a blob of shape {list(shape)}")
    fan_in = n // shape[0]
    fan_out = n // shape[1] if len(shape) > 1 else n
    return fan_in, fan_out


def _fan(shape: tuple[int, ...], norm: VarianceNorm) -> float:
    fan_in, fan_out = fan_in_out(shape)
    if norm is VarianceNorm.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if norm is VarianceNorm.FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def xavier_scale(shape: tuple[int, ...], norm: VarianceNorm = VarianceNorm.FAN_IN) -> float:
    """The half-width of Caffe's xavier uniform: ``sqrt(3 / n)``."""
    return math.sqrt(3.0 / _fan(shape, norm))


def msra_std(shape: tuple[int, ...], norm: VarianceNorm = VarianceNorm.FAN_IN) -> float:
    """The standard deviation of Caffe's msra gaussian: ``sqrt(2 / n)``."""
    return math.sqrt(2.0 / _fan(shape, norm))


def _finite(f: Filler, name: str) -> FillerProblem | None:
    """``f.<name>`` as Caffe's float: NaN, infinite, or past float32's range is refused."""
    v = float(getattr(f, name))
    if math.isnan(v):
        return FillerProblem(f"{f.type.value} filler: {name} is NaN", name)
    if abs(v) > FLT_MAX:
        what = "infinite" if math.isinf(v) else f"{v:g}, past float32's range (+-{FLT_MAX:.4g})"
        return FillerProblem(f"{f.type.value} filler: {name} is {what}", name,
                             "Caffe stores filler settings as float32; give a finite value")
    return None


def problem(f: Filler, shape: tuple[int, ...] | None = None) -> FillerProblem | None:
    """What Caffe's filler of these settings would CHECK-fail on, or None.

    Without ``shape``, only the settings themselves (every filler, whatever it fills);
    with the blob's ``shape``, also what depends on it. From BVLC caffe
    ``include/caffe/filler.hpp`` and ``src/caffe/util/math_functions.cpp``:
    ``caffe_rng_gaussian`` CHECKs ``sigma > 0`` (so ``std`` must be positive: a fixed value
    is ``constant``), ``caffe_rng_uniform`` ``a <= b``, ``caffe_rng_bernoulli``
    ``0 <= p <= 1`` (gaussian ``sparse``); every filler but gaussian CHECKs
    ``sparse == -1``, gaussian ``sparse >= -1``; bilinear a 4-D blob with square kernels.
    netdsl adds that each number is finite in float32 (Caffe's Dtype) and that a uniform
    range fits float32 (torch's ``uniform_`` refuses wider ones).
    """
    kind = f.type
    if f.sparse != -1 and kind is not FillerType.gaussian:
        return FillerProblem(
            f"sparse is only supported by the gaussian filler, not {kind.value}", "sparse",
            "Caffe CHECKs sparse == -1 for it: drop sparse")
    names = {FillerType.constant: ("value",), FillerType.uniform: ("min", "max"),
             FillerType.gaussian: ("mean", "std")}.get(kind, ())
    for name in names:
        bad = _finite(f, name)
        if bad is not None:
            return bad
    if kind is FillerType.gaussian:
        if not f.std > 0:
            return FillerProblem(
                f"gaussian filler: std must be positive, got {f.std:g}", "std",
                "Caffe's caffe_rng_gaussian CHECKs std > 0; a fixed value is constant(v)")
        if f.sparse < -1:
            return FillerProblem(f"gaussian filler: sparse must be -1 or more, got {f.sparse}",
                                 "sparse", "-1 (the default) means dense")
    if kind is FillerType.uniform:
        if f.min > f.max:
            return FillerProblem(
                f"uniform filler: min {f.min:g} is more than max {f.max:g}", "min",
                "Caffe's caffe_rng_uniform CHECKs min <= max")
        if f.max - f.min > FLT_MAX:
            return FillerProblem(
                f"uniform filler: the range {f.min:g} to {f.max:g} is wider than float32 "
                "can hold", "max", f"keep max - min under {FLT_MAX:.4g}")
    if shape is None or math.prod(shape) == 0:
        return None
    return _shape_problem(f, shape)


def _shape_problem(f: Filler, shape: tuple[int, ...]) -> FillerProblem | None:
    kind = f.type
    if kind is FillerType.gaussian and f.sparse >= 0:
        if not shape:
            return FillerProblem("a sparse gaussian filler needs a blob with axes", "sparse")
        if f.sparse > shape[0]:
            return FillerProblem(
                f"sparse {f.sparse} is more than the blob's {shape[0]} outputs "
                "(Caffe keeps each weight with probability sparse / outputs)", "sparse",
                f"give sparse <= {shape[0]}")
    if kind is FillerType.positive_unitball and not shape:
        return FillerProblem("the positive_unitball filler needs a blob with axes", "type")
    if kind is FillerType.bilinear:
        if len(shape) != 4:
            return FillerProblem(f"the bilinear filler needs a 4-D blob, got {list(shape)}",
                                 "type", "Caffe's BilinearFiller CHECKs 4 axes")
        if shape[2] != shape[3]:
            return FillerProblem(f"the bilinear filler needs square kernels, got {list(shape)}",
                                 "type", "Caffe's BilinearFiller CHECKs width == height")
    return None


def _bilinear(shape: tuple[int, ...]) -> torch.Tensor:
    import torch

    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    r = 1.0 - (torch.arange(k, dtype=torch.float64) / f - c).abs()
    return (r[:, None] * r[None, :]).to(torch.float32).expand(shape)


def _values(shape: tuple[int, ...], f: Filler, g: torch.Generator,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Caffe's filler values in a CPU float32 tensor: ``out`` (contiguous), or a new one."""
    import torch

    kind = f.type
    bad = problem(f, shape)
    if bad is not None:
        raise bad
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    if out.numel() == 0:
        return out
    if kind is FillerType.constant:
        return out.fill_(f.value)
    if kind is FillerType.uniform:
        return out.uniform_(f.min, f.max, generator=g)
    if kind is FillerType.gaussian:
        out.normal_(f.mean, f.std, generator=g)
        if f.sparse >= 0:
            p = f.sparse / shape[0]
            keep = torch.empty(shape, dtype=torch.float32).bernoulli_(p, generator=g)
            out.mul_(keep)
        return out
    if kind is FillerType.xavier:
        scale = xavier_scale(shape, f.variance_norm)
        return out.uniform_(-scale, scale, generator=g)
    if kind is FillerType.msra:
        return out.normal_(0.0, msra_std(shape, f.variance_norm), generator=g)
    if kind is FillerType.positive_unitball:
        out.uniform_(0.0, 1.0, generator=g)
        rows = out.view(shape[0], -1)
        rows.div_(rows.sum(dim=1, keepdim=True))
        return out
    if kind is FillerType.bilinear:
        return out.copy_(_bilinear(shape))
    raise FillerError(f"unknown filler type {kind}")


def fill_(tensor: torch.Tensor, filler: Filler, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` in place as Caffe's filler of these settings; returns it.

    Values are drawn on the CPU in float32 from ``generator`` (which must be a CPU
    generator) and copied in, so they do not depend on the tensor's device or dtype.
    """
    import torch

    with torch.no_grad():
        if (tensor.device.type == "cpu" and tensor.dtype == torch.float32
                and tensor.is_contiguous()):
            return _values(tuple(tensor.shape), filler, generator, out=tensor)
        values = _values(tuple(tensor.shape), filler, generator)
        return tensor.copy_(values)


def fill_blobs(blobs: Iterable[tuple[tuple[int, ...], Filler]],
               generator: torch.Generator) -> list[torch.Tensor]:
    """CPU float32 tensors for ``(shape, filler)`` pairs, drawn in the order given."""
    return [_values(tuple(shape), f, generator) for shape, f in blobs]


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (the one stream a net's blobs are drawn from)."""
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g
