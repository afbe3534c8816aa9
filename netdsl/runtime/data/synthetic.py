"""Random images of a given shape and class count, for tests and ``netdsl time``.

Each class has a fixed random prototype; sample ``i`` is its class's prototype blended
with per-sample noise, so a net can actually learn the task (useful for smoke tests),
and everything is a pure function of ``(seed, i)``: no state, any access order.
Labels cycle through the classes (``i % num_classes``), so the classes are balanced.
The prototypes depend on ``seed`` only; the noise also on ``stream``, so a training and
a test set (streams 0 and 1) share their classes but not their samples.
"""

from __future__ import annotations

import numpy as np

from .base import Source

__all__ = ["SyntheticSource"]

#: Above this many bytes, ``all_images`` declines and samples are made on demand.
_IN_MEMORY_BYTES = 256 << 20


class SyntheticSource(Source):
    """``num_samples`` float32 images of ``shape`` (C, H, W) with values in 0..1."""

    pixel_max = 1.0

    def __init__(
        self,
        shape: tuple[int, int, int],
        num_classes: int = 10,
        num_samples: int = 1000,
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"synthetic shape must be (C, H, W) with positive sizes: {shape}")
        if num_classes < 1 or num_samples < 1 or seed < 0 or stream < 0:
            raise ValueError("synthetic data needs num_classes, num_samples >= 1, seed >= 0")
        self.shape = tuple(int(s) for s in shape)
        self.num_classes = int(num_classes)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.stream = int(stream)
        self.label_names = tuple(f"class{k}" for k in range(num_classes))
        self.channel_order = "RGB" if self.shape[0] == 3 else "L"
        proto_rng = np.random.default_rng([self.seed, 0])
        self._protos = proto_rng.random((num_classes, *self.shape), dtype=np.float32)
        self._all: np.ndarray | None = None

    def __len__(self) -> int:
        return self.num_samples

    def get(self, i: int) -> tuple[np.ndarray, int]:
        i = self._check_index(i)
        label = i % self.num_classes
        noise = np.random.default_rng([self.seed, 1, self.stream, i]).random(
            self.shape, dtype=np.float32
        )
        return 0.5 * self._protos[label] + 0.5 * noise, label

    def all_images(self) -> np.ndarray | None:
        nbytes = 4 * self.num_samples * int(np.prod(self.shape))
        if nbytes > _IN_MEMORY_BYTES:
            return None
        if self._all is None:
            self._all = np.stack([self.get(i)[0] for i in range(self.num_samples)])
        return self._all

    def labels(self) -> np.ndarray:
        return np.arange(self.num_samples, dtype=np.int64) % self.num_classes
