"""A Caffe list file: one ``path label`` per line, as the ImageData layer's ``source``.

As Caffe parses it, the label is the integer after the *last* space, so paths may contain
spaces; blank lines are skipped. Each path is joined to ``root`` (Caffe's
``root_folder``) with ``os.path.join``, so ``root`` needs no trailing slash and absolute
paths stay as written; with no root, relative paths are relative to the current folder,
as in Caffe.

Every listed file is checked to exist when the source is made (``check_files``), so a
typo fails before training starts rather than hours into it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from netdsl.diagnostics import DataError, Span

from .base import ImageFileSource

__all__ = ["ListSource"]


class ListSource(ImageFileSource):
    """Images named in a ``path label`` list file, decoded to ``(C, H, W)`` uint8."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        root: str | os.PathLike[str] = "",
        channels: int = 3,
        bgr: bool = False,
        check_files: bool = True,
    ) -> None:
        super().__init__(channels, bgr)
        self.path = os.fspath(path)
        self.root = os.fspath(root)
        if self.root and not os.path.isdir(self.root):
            raise DataError(f"root folder not found: {self.root}")
        try:
            text = Path(self.path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"list file not found: {self.path}") from None
        except IsADirectoryError:
            raise DataError(
                f"expected a list file, found a folder: {self.path}",
                hint="a folder with one sub-folder per class is source 'folder'",
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read list file {self.path}: {e}") from None
        paths: list[str] = []
        lines: list[int] = []
        labels: list[int] = []
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.rstrip()
            if not line.strip():
                continue
            name, sep, label = line.rpartition(" ")
            name = name.strip()
            span = Span(self.path, n, 1, n, len(line) + 1)
            if not sep or not name:
                raise DataError(
                    "expected 'path label' on this line",
                    span,
                    "one image per line: the "
                    "image's path, a space, and its integer label (e.g. 'cat/001.jpg 3')",
                )
            try:
                value = int(label)
            except ValueError:
                raise DataError(
                    f"the label must be an integer, got '{label}'",
                    Span(self.path, n, len(line) - len(label) + 1, n, len(line) + 1),
                ) from None
            if value < 0:
                raise DataError(f"labels cannot be negative, got {value}", span)
            paths.append(os.path.join(self.root, name) if self.root else name)
            lines.append(n)
            labels.append(value)
        if not paths:
            raise DataError(f"list file has no 'path label' lines: {self.path}")
        self.paths = paths
        self.lines = lines
        self._labels = np.asarray(labels, dtype=np.int64)
        if check_files:
            self._check_files()

    def _check_files(self) -> None:
        missing = [k for k, p in enumerate(self.paths) if not os.path.isfile(p)]
        if not missing:
            return
        k = missing[0]
        more = f" (and {len(missing) - 1} more listed files)" if len(missing) > 1 else ""
        hint = None
        if not self.root:
            hint = "paths are relative to the current folder unless root (root_folder) is set"
        raise DataError(
            f"image not found: {self.paths[k]}{more}",
            Span(self.path, self.lines[k], 1),
            hint,
        )

    def describe(self, i: int) -> str:
        return f"{self.paths[i]} ({self.path}:{self.lines[i]})"
