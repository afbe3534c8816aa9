"""scikit-learn's 1,797 handwritten digits: a real data set that needs no download.

The images are the UCI "Optical Recognition of Handwritten Digits" test set as shipped
inside scikit-learn (``sklearn.datasets.load_digits``): 8x8 grey images with pixel values
0..16, labels 0..9.

The split is fixed so that every netdsl run (and every test) sees the same data::

    train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)

which gives 1,437 training and 360 test images, each class in the same proportion in
both. ``split="all"`` gives all 1,797 in the original order.

Samples come out as ``(1, 8, 8)`` float32 scaled to 0..1 (value / 16); resizing to a
net's input and replicating to three channels are transforms (see ``build_loader``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from netdsl.diagnostics import DataError, did_you_mean

from .base import Source

__all__ = ["DigitsSource", "SPLITS", "TEST_SIZE", "SPLIT_SEED"]

SPLITS = ("train", "test", "all")
TEST_SIZE = 0.2
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images N,1,8,8 float32 0..1, labels int64, train indices, test indices)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = (np.asarray(d.images, dtype=np.float32) / 16.0)[:, None]
    labels = np.asarray(d.target, dtype=np.int64)
    index = np.arange(len(labels))
    train, test = train_test_split(
        index, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    for a in (images, labels, train, test):
        a.setflags(write=False)
    return images, labels, np.asarray(train), np.asarray(test)


class DigitsSource(Source):
    """The fixed train (1,437) / test (360) / all (1,797) split of scikit-learn's digits."""

    label_names = tuple(str(d) for d in range(10))
    channel_order = "L"
    pixel_max = 1.0

    def __init__(self, split: str = "train") -> None:
        if split not in SPLITS:
            raise DataError(
                f"unknown digits split '{split}'; the splits are {', '.join(SPLITS)}",
                hint=did_you_mean(split, SPLITS),
            )
        images, labels, train, test = _load()
        index = {"train": train, "test": test, "all": np.arange(len(labels))}[split]
        self.split = split
        self.indices = index
        self._images = np.ascontiguousarray(images[index])
        self._labels = np.ascontiguousarray(labels[index])

    def __len__(self) -> int:
        return len(self._labels)

    def get(self, i: int) -> tuple[np.ndarray, int]:
        i = self._check_index(i)
        return self._images[i], int(self._labels[i])

    def describe(self, i: int) -> str:
        return f"digits {self.split} sample {i}"

    def all_images(self) -> np.ndarray:
        return self._images

    def labels(self) -> np.ndarray:
        return self._labels
