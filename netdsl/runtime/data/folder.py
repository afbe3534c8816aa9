"""An image folder tree, one sub-folder per class, as torchvision's ``ImageFolder``::

    root/cat/001.jpg
    root/cat/more/002.png      (sub-folders of a class folder are searched too)
    root/dog/003.jpg

Class folders are sorted by name and numbered from 0; inside each, images are taken in
sorted path order. A file counts as an image by its ending (``IMAGE_EXTENSIONS``, any
case); other files are ignored. An empty class folder is an error, as in ImageFolder,
since its label could never be learnt.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from netdsl.diagnostics import DataError

from .base import IMAGE_EXTENSIONS, ImageFileSource

__all__ = ["FolderSource"]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class FolderSource(ImageFileSource):
    """Images under ``root/<class>/``, decoded with Pillow to ``(C, H, W)`` uint8."""

    def __init__(self, root: str | os.PathLike[str], channels: int = 3, bgr: bool = False):
        super().__init__(channels, bgr)
        self.root = Path(root)
        if not self.root.exists():
            raise DataError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise DataError(
                f"expected a folder of class folders, found a file: {self.root}",
                hint="a list of 'path label' lines is source 'list'",
            )
        try:
            with os.scandir(self.root) as it:
                entries = list(it)
        except OSError as e:
            raise DataError(f"cannot read image folder {self.root}: {e.strerror}") from None
        classes = sorted(e.name for e in entries if e.is_dir())
        if not classes:
            loose = any(_is_image(e.name) for e in entries if e.is_file())
            raise DataError(
                f"no class folders in {self.root}",
                hint="put the images in one sub-folder per class: "
                f"{self.root}/<class name>/<image>"
                + (" (images were found directly in it)" if loose else ""),
            )
        paths: list[str] = []
        labels: list[int] = []
        empty: list[str] = []
        for label, name in enumerate(classes):
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(self.root / name, followlinks=True):
                dirnames.sort()
                found += [os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f)]
            if not found:
                empty.append(name)
            paths += found
            labels += [label] * len(found)
        if empty:
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            raise DataError(
                f"class folder{'s' if len(empty) > 1 else ''} without images in {self.root}: "
                f"{shown}",
                hint="images are recognised by their ending: " + " ".join(IMAGE_EXTENSIONS),
            )
        self.label_names = tuple(classes)
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.paths = paths
        self._labels = np.asarray(labels, dtype=np.int64)
