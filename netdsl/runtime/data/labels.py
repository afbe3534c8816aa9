"""Labels the net can take: ``0 <= label < classes`` (or the loss's ``ignore_label``),
checked before training where the source knows its labels (digits, folders, list files,
synthetic), else as each sample is read (an LMDB), naming the label, the sample and the
net's output count. A label past the outputs would otherwise index out of range inside
the loss: a crash on the CPU, a device-side assert on a GPU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netdsl.diagnostics import DataError, Span

from .base import SampleSource

__all__ = ["LabelRange", "check_labels"]


@dataclass(frozen=True)
class LabelRange:
    """The labels a net's loss takes: ``classes`` outputs, and the ignored label."""

    classes: int
    ignore: int | None = None

    def bad(self, label: int) -> bool:
        return label != self.ignore and not 0 <= label < self.classes

    def error(self, label: int, where: str, span: Span | None = None) -> DataError:
        return DataError(
            f"label {label} of {where} is outside the net's {self.classes} outputs "
            f"(labels 0 to {self.classes - 1})", span,
            "give the classifier as many outputs as there are classes (its num_output, "
            "e.g. --set classes=N where the spec has such a variable), or fix the labels")


def check_labels(source: SampleSource, labels: LabelRange, span: Span | None = None) -> bool:
    """Check every label of ``source`` up front, if it knows them without decoding;
    returns whether it did."""
    known = getattr(source, "labels", None)
    values = known() if callable(known) else None
    if values is None:
        return False
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    bad = (values < 0) | (values >= labels.classes)
    if labels.ignore is not None:
        bad &= values != labels.ignore
    if not bad.any():
        return True
    i = int(np.flatnonzero(bad)[0])
    names = getattr(source, "label_names", None)
    if names is not None and len(names) > labels.classes:
        raise DataError(
            f"the data has {len(names)} classes ({names[0]} to {names[-1]}), but the net "
            f"has {labels.classes} outputs", span,
            "give the classifier as many outputs as there are classes (its num_output), "
            "or remove the extra class folders")
    describe = getattr(source, "describe", None)
    where = describe(i) if callable(describe) else f"sample {i}"
    raise labels.error(int(values[i]), where, span)
