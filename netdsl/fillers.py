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
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .layers.base import Filler, FillerType, VarianceNorm

__all__ = [
    "FillerError", "fan_in_out", "fill_", "fill_blobs", "generator", "msra_std", "xavier_scale",
]


class FillerError(ValueError):
    """A filler that cannot fill the blob it is given (Caffe would abort on a CHECK)."""


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


def _bilinear(shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) != 4:
        raise FillerError(f"the bilinear filler needs a 4-D blob, got {list(shape)}")
    if shape[2] != shape[3]:
        raise FillerError(f"the bilinear filler needs square kernels, got {list(shape)}")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    r = 1.0 - (torch.arange(k, dtype=torch.float64) / f - c).abs()
    return (r[:, None] * r[None, :]).to(torch.float32).expand(shape)


def _values(shape: tuple[int, ...], f: Filler, g: torch.Generator,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Caffe's filler values in a CPU float32 tensor: ``out`` (contiguous), or a new one."""
    kind = f.type
    if f.sparse != -1 and kind is not FillerType.gaussian:
        raise FillerError(f"sparse is only supported by the gaussian filler, not {kind.value}")
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
        if f.sparse < -1:
            raise FillerError(f"sparse must be -1 or more, got {f.sparse}")
        if f.sparse >= 0:
            if not shape:
                raise FillerError("a sparse gaussian filler needs a blob with axes")
            p = f.sparse / shape[0]
            if p > 1:
                raise FillerError(
                    f"sparse {f.sparse} is more than the blob's {shape[0]} outputs "
                    "(Caffe keeps each weight with probability sparse / outputs)")
            keep = torch.empty(shape, dtype=torch.float32).bernoulli_(p, generator=g)
            out.mul_(keep)
        return out
    if kind is FillerType.xavier:
        scale = xavier_scale(shape, f.variance_norm)
        return out.uniform_(-scale, scale, generator=g)
    if kind is FillerType.msra:
        return out.normal_(0.0, msra_std(shape, f.variance_norm), generator=g)
    if kind is FillerType.positive_unitball:
        if not shape:
            raise FillerError("the positive_unitball filler needs a blob with axes")
        out.uniform_(0.0, 1.0, generator=g)
        rows = out.view(shape[0], -1)
        rows.div_(rows.sum(dim=1, keepdim=True))
        return out
    if kind is FillerType.bilinear:
        return out.copy_(_bilinear(shape))
    raise FillerError(f"unknown filler type {kind}")


@torch.no_grad()
def fill_(tensor: torch.Tensor, filler: Filler, generator: torch.Generator) -> torch.Tensor:
    """Fill ``tensor`` in place as Caffe's filler of these settings; returns it.

    Values are drawn on the CPU in float32 from ``generator`` (which must be a CPU
    generator) and copied in, so they do not depend on the tensor's device or dtype.
    """
    if tensor.device.type == "cpu" and tensor.dtype == torch.float32 and tensor.is_contiguous():
        return _values(tuple(tensor.shape), filler, generator, out=tensor)
    values = _values(tuple(tensor.shape), filler, generator)
    return tensor.copy_(values)


def fill_blobs(blobs: Iterable[tuple[tuple[int, ...], Filler]],
               generator: torch.Generator) -> list[torch.Tensor]:
    """CPU float32 tensors for ``(shape, filler)`` pairs, drawn in the order given."""
    return [_values(tuple(shape), f, generator) for shape, f in blobs]


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (the one stream a net's blobs are drawn from)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g
