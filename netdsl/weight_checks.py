"""Checks of weights against a net, before anything from a file reaches it: every blob's
shape (:func:`check_weights_fit`), the kinds of the tensors and that their values are
finite (:func:`check_weight_values`). Each refusal is one DataError naming every tensor
at fault. :mod:`netdsl.weights` re-exports both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from netdsl.diagnostics import DataError, Span, did_you_mean

__all__ = ["check_weights_fit", "check_weight_values", "fmt_shape"]


def _span(path: str | os.PathLike[str]) -> Span:
    return Span(str(path))


def check_weights_fit(
    expected: Mapping[str, tuple[int, ...]],
    got: Mapping[str, tuple[int, ...]],
    *,
    path: str | os.PathLike[str] | None = None,
) -> None:
    """Raise a DataError listing every blob whose shape differs, is missing or is extra.

    ``path`` (the weights file) is where the error points, when given.
    """
    problems: list[str] = []
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    for key, want in expected.items():
        if key in got and tuple(got[key]) != tuple(want):
            problems.append(f"'{key}' has shape {fmt_shape(got[key])} but the net expects "
                            f"{fmt_shape(want)}")
    for key in missing:
        near = did_you_mean(key, unexpected)
        problems.append(f"missing '{key}' {fmt_shape(expected[key])}"
                        + (f" ({near})" if near else ""))
    for key in unexpected:
        near = did_you_mean(key, missing)
        problems.append(
            f"unexpected '{key}' {fmt_shape(got[key])}, not a parameter of the net"
            + (f" ({near})" if near else "")
        )
    if not problems:
        return
    counts = []
    n_shape = len(problems) - len(missing) - len(unexpected)
    if n_shape:
        counts.append(f"{n_shape} with the wrong shape")
    if missing:
        counts.append(f"{len(missing)} missing")
    if unexpected:
        counts.append(f"{len(unexpected)} unexpected")
    limit = 20
    notes: list[tuple[str, Span | None]] = [(p, None) for p in problems[:limit]]
    if len(problems) > limit:
        notes.append((f"... and {len(problems) - limit} more", None))
    first = problems[0] if len(problems) == 1 else ", ".join(counts)
    raise DataError(
        f"weights do not fit the net: {first}",
        _span(path) if path is not None else None,
        hint="were these weights trained for this net? layer names and shapes must match",
        notes=notes,
    )


def fmt_shape(shape: tuple[int, ...]) -> str:
    """``(20, 1, 5, 5)``: a shape as netdsl's messages write it."""
    return str(tuple(int(d) for d in shape))


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "integer"


def _dtype(dtype: torch.dtype) -> str:
    """``floating-point (float32)``, ``integer (int64)``, ``bool``."""
    kind, name = _kind(dtype), str(dtype).removeprefix("torch.")
    return kind if kind == name else f"{kind} ({name})"


def _nonfinite(t: torch.Tensor) -> tuple[int, int]:
    """(NaN count, infinite count) of a tensor; (0, 0) for integer and bool tensors."""
    if not (t.is_floating_point() or t.is_complex()) or bool(torch.isfinite(t).all()):
        return 0, 0
    return int(torch.isnan(t).sum()), int(torch.isinf(t).sum())


def _refuse(problems: list[str], what: str, path: str | os.PathLike[str] | None,
            hint: str) -> DataError:
    limit = 20
    notes: list[tuple[str, Span | None]] = [(q, None) for q in problems[:limit]]
    if len(problems) > limit:
        notes.append((f"... and {len(problems) - limit} more", None))
    first = problems[0] if len(problems) == 1 else f"{len(problems)} tensors, listed below"
    return DataError(f"{what}: {first}", _span(path) if path is not None else None,
                     hint=hint, notes=notes if len(problems) > 1 else ())


def check_weight_values(
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.dtype],
    *,
    path: str | os.PathLike[str] | None = None,
    allow_nonfinite: bool = False,
    what: str = "the weights",
) -> None:
    """Refuse, naming every tensor at fault in one DataError at ``path``: a tensor whose
    kind differs from what ``expected`` says the net holds (an integer or bool tensor
    where the net has floating point, or the reverse; float64 for float32 is converted,
    not refused), and, unless ``allow_nonfinite``, NaN or infinite values. Only the keys
    of ``expected`` are looked at."""
    wrong: list[str] = []
    nonfinite: list[str] = []
    for key, want in expected.items():
        t = tensors[key]
        if _kind(t.dtype) != _kind(want):
            wrong.append(f"'{key}' is {_dtype(t.dtype)} where the net has {_dtype(want)}")
            continue
        if not allow_nonfinite:
            nan, inf = _nonfinite(t)
            if nan or inf:
                counts = " and ".join(part for part in (f"{nan:,} NaN" if nan else "",
                                                         f"{inf:,} infinite" if inf else "")
                                      if part)
                nonfinite.append(f"'{key}' has {counts} among its {t.numel():,} values")
    if wrong:
        raise _refuse(wrong, f"tensors of the wrong type in {what}", path,
                      "the file holds integer or quantised tensors, or was written for another "
                      "net; netdsl loads floating-point values only where the net has them")
    if nonfinite:
        raise _refuse(nonfinite, f"non-finite values in {what}", path,
                      "the run that wrote them probably diverged (try a lower base_lr, or "
                      "clip_gradients); --allow-nonfinite loads them anyway")
