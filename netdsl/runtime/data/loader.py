"""Batches from a source through a pipeline: deterministic, resumable, single-process.

The loader is an endless stream of batches ``(data float32 (N, C, H, W), label int64 (N,))``,
like a Caffe data layer whose database cursor wraps around:

* the samples of epoch ``e`` are taken in the order ``permutation(e)`` -- a fresh
  shuffle per epoch drawn from ``SeedSequence([seed, 0, e])`` when shuffling (TRAIN), or
  ``0, 1, ..., N-1`` (TEST);
* batches are consecutive runs of ``batch_size`` samples of that stream; a batch that
  runs past the end of an epoch continues with the start of the next (Caffe's cursor
  wraps), so no sample is dropped and every batch is full;
* random transforms draw from one numpy Generator (PCG64, seeded from
  ``SeedSequence([seed, 1])``), a whole batch at a time.

So the batches are a function of ``(seed, position)``, and :meth:`Loader.state` -- epoch,
index within the epoch, the Generator's state, as plain ints in a JSON-ready dict -- is
everything needed to continue: a new loader given it with :meth:`Loader.load_state`
produces exactly the batches the original would have produced next.

For TEST, note that as in Caffe the cursor carries on from one test pass to the next:
with ``test_iter * batch_size`` different from the number of samples, consecutive
passes see different samples. Call :meth:`Loader.reset` before a pass to always test
from the first sample (``epoch_size`` batches then cover every sample, the last batch
wrapping to the first samples again).

Speed: the deterministic stage of the pipeline (decode, resize, channel replication) is
computed once per sample and cached while the whole data set fits in ``cache_bytes``;
sources held in memory (digits, synthetic) are transformed all at once up front. Crops,
mirroring and lighting run on whole batches, vectorised in torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from netdsl.diagnostics import DataError

from .base import SampleSource
from .transforms import Pipeline, to_tensor

__all__ = ["Loader", "average_crops", "STATE_FORMAT"]

STATE_FORMAT = "netdsl.data.loader/1"
_PREFIX_CHUNK = 512


def average_crops(output: torch.Tensor, crops: int) -> torch.Tensor:
    """Average a net's outputs over each image's crops: ``(N * crops, ...) -> (N, ...)``."""
    if crops == 1:
        return output
    return output.reshape(output.shape[0] // crops, crops, *output.shape[1:]).mean(1)


def _to_array(arr: Any, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 3:
        raise DataError(f"{what} has shape {a.shape}; samples must be (channels, height, width)")
    if a.dtype != np.uint8:
        a = a.astype(np.float32, copy=False)
    return a


class Loader:
    """Endless, reproducible batches of ``source`` transformed by ``pipeline``.

    ``out_shape`` (the net's ``(C, H, W)``), if given, is checked for every sample, so a
    mismatch is reported naming the sample rather than failing inside the net.
    """

    def __init__(
        self,
        source: SampleSource,
        pipeline: Pipeline | None = None,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        out_shape: tuple[int, int, int] | None = None,
        cache_bytes: int = 1 << 30,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = len(source)
        if n == 0:
            raise DataError("the data source has no samples")
        self.source = source
        self.pipeline = pipeline or Pipeline()
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.out_shape = tuple(out_shape) if out_shape is not None else None
        self.cache_bytes = int(cache_bytes)
        self._n = n
        self._set_seed(seed)
        self._perm_epoch = -1
        self._perm: np.ndarray = np.arange(n)
        self._cache: list[tuple[torch.Tensor, int] | None] | None = None
        self._cache_decided = False
        self._stacked: torch.Tensor | None = None
        self._stacked_labels: torch.Tensor | None = None
        self._precompute()

    # -- position ---------------------------------------------------------------------

    def _set_seed(self, seed: int) -> None:
        self.seed = int(seed) % (1 << 64)  # SeedSequence wants non-negative entropy
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, 1])))
        self.epoch = 0
        self.index = 0

    @property
    def num_samples(self) -> int:
        return self._n

    @property
    def epoch_size(self) -> int:
        """Batches per epoch: ``ceil(num_samples / batch_size)`` (every sample seen once)."""
        return math.ceil(self._n / self.batch_size)

    @property
    def crops(self) -> int:
        """Rows of data per sample: 10 with 10-crop testing, else 1 (see ``average_crops``)."""
        return self.pipeline.crops

    @property
    def label_names(self) -> tuple[str, ...] | None:
        return getattr(self.source, "label_names", None)

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self._perm
        if epoch != self._perm_epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, epoch]))
            self._perm = rng.permutation(self._n)
            self._perm_epoch = epoch
        return self._perm

    def _next_indices(self) -> np.ndarray:
        parts = []
        need = self.batch_size
        while need:
            order = self._order(self.epoch)
            take = order[self.index : self.index + need]
            parts.append(take)
            need -= len(take)
            self.index += len(take)
            if self.index == self._n:
                self.epoch += 1
                self.index = 0
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()

    def reset(self) -> None:
        """Back to the first batch of epoch 0, with the random stream restarted."""
        self._set_seed(self.seed)

    def state(self) -> dict[str, Any]:
        """The full position as a JSON-serialisable dict (ints, strings, bools)."""
        rng = self._rng.bit_generator.state
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "index": self.index,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "num_samples": self._n,
            "batch_size": self.batch_size,
            "rng": {
                "bit_generator": rng["bit_generator"],
                "state": int(rng["state"]["state"]),
                "inc": int(rng["state"]["inc"]),
                "has_uint32": int(rng["has_uint32"]),
                "uinteger": int(rng["uinteger"]),
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state`: the next batches are those the saver would have made.

        The saved seed replaces this loader's. The data must be the same size and the
        batch size the same, or the saved position means nothing here (DataError).
        """
        try:
            if state.get("format") != STATE_FORMAT:
                raise KeyError("format")
            epoch, index, seed = int(state["epoch"]), int(state["index"]), int(state["seed"])
            n, bs, shuffle = int(state["num_samples"]), int(state["batch_size"]), state["shuffle"]
            r = state["rng"]
            rng_state = {
                "bit_generator": str(r["bit_generator"]),
                "state": {"state": int(r["state"]), "inc": int(r["inc"])},
                "has_uint32": int(r["has_uint32"]),
                "uinteger": int(r["uinteger"]),
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(
                f"the saved data-loader position is not valid ({type(e).__name__}: {e})",
                hint="was the snapshot written by another program or version?",
            ) from None
        if (n, bs) != (self._n, self.batch_size):
            raise DataError(
                f"the saved data position is for {n} samples in batches of {bs}; this data "
                f"has {self._n} samples in batches of {self.batch_size}",
                hint="resume with the same data and batch_size",
            )
        if bool(shuffle) != self.shuffle:
            raise DataError(
                f"the saved data position was {'' if shuffle else 'not '}shuffled; this "
                f"loader does{'' if self.shuffle else ' not'} shuffle"
            )
        if not 0 <= index < n or epoch < 0:
            raise DataError(f"the saved data position (epoch {epoch}, index {index}) is invalid")
        if rng_state["bit_generator"] != "PCG64":
            raise DataError(f"unknown random generator '{rng_state['bit_generator']}' in state")
        self._set_seed(seed)
        self._rng.bit_generator.state = rng_state
        self.epoch, self.index = epoch, index

    # -- samples ----------------------------------------------------------------------

    def _describe(self, i: int) -> str:
        describe = getattr(self.source, "describe", None)
        name: str = describe(int(i)) if describe else f"sample {i}"
        return name

    def _check_item(self, t: torch.Tensor, i: int) -> None:
        c, h, w = t.shape
        p = self.pipeline
        what = self._describe(i)
        if self.out_shape is not None and c != self.out_shape[0]:
            raise DataError(
                f"{what} has {c} channel{'s' if c != 1 else ''}, the net's input "
                f"{self.out_shape[0]}",
                hint="set channels to decode colour (3) or grey (1) images",
            )
        crop = p.crop_size
        if crop is not None and (h < crop[0] or w < crop[1]):
            raise DataError(
                f"{what} is {h}x{w}{' after resizing' if p.resize else ''}, smaller than "
                f"the {crop[0]}x{crop[1]} crop",
                hint="resize it first: resize [S] with S at least the crop size",
            )
        if crop is None and self.out_shape is not None and (h, w) != self.out_shape[1:]:
            raise DataError(
                f"{what} is {h}x{w}, the net's input {self.out_shape[1]}x{self.out_shape[2]}",
                hint="resize the images, or crop them",
            )
        if p.mean is not None and p.mean.image is not None:
            mshape = tuple(p.mean.image.shape)
            if mshape != (c, h, w):
                raise DataError(
                    f"the mean image is {mshape[0]}x{mshape[1]}x{mshape[2]} but {what} is "
                    f"{c}x{h}x{w}{' after resizing' if p.resize else ''}",
                    hint="the mean image must have the size of the images before cropping",
                )

    def _precompute(self) -> None:
        """Run the deterministic stage over in-memory sources once, as one tensor."""
        all_images = getattr(self.source, "all_images", None)
        images = all_images() if all_images else None
        if images is None:
            return
        images = np.asarray(images)
        if images.dtype != np.uint8:
            images = images.astype(np.float32, copy=False)
        if images.ndim != 4 or len(images) != self._n:
            raise ValueError(f"all_images() gave shape {images.shape} for {self._n} samples")
        chunks = [
            self.pipeline.prefix(to_tensor(images[k : k + _PREFIX_CHUNK]))
            for k in range(0, self._n, _PREFIX_CHUNK)
        ]
        stacked = torch.cat(chunks).contiguous()
        self._check_item(stacked[0], 0)
        labels = self.source.labels() if hasattr(self.source, "labels") else None
        if labels is None:
            labels = np.array([self.source.get(i)[1] for i in range(self._n)])
        self._stacked = stacked
        self._stacked_labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))

    def _item(self, i: int) -> tuple[torch.Tensor, int]:
        if self._cache is not None and (hit := self._cache[i]) is not None:
            return hit
        arr, label = self.source.get(int(i))
        what = self._describe(i)
        t = self.pipeline.prefix(to_tensor(_to_array(arr, what))[None])[0]
        self._check_item(t, i)
        item = (t, int(label))
        if not self._cache_decided:
            self._cache_decided = True
            if t.element_size() * t.nelement() * self._n <= self.cache_bytes:
                self._cache = [None] * self._n
        if self._cache is not None:
            self._cache[i] = item
        return item

    def _make(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x: torch.Tensor | list[torch.Tensor]
        if self._stacked is not None and self._stacked_labels is not None:
            it = torch.from_numpy(idx)
            x, y = self._stacked[it], self._stacked_labels[it]
        else:
            items = [self._item(i) for i in idx]
            y = torch.tensor([lab for _, lab in items], dtype=torch.int64)
            tensors = [t for t, _ in items]
            if all(t.shape == tensors[0].shape for t in tensors):
                x = torch.stack(tensors)
            elif self.pipeline.crop is None:
                odd = next(k for k, t in enumerate(tensors) if t.shape != tensors[0].shape)
                a, b = tensors[0].shape, tensors[odd].shape
                raise DataError(
                    f"images differ in size: {self._describe(idx[0])} is {a[1]}x{a[2]}, "
                    f"{self._describe(idx[odd])} is {b[1]}x{b[2]}",
                    hint="resize them to one size ([H, W]), or crop",
                )
            else:
                x = tensors
        return self.pipeline.finish(x, self._rng), y

    # -- batches ----------------------------------------------------------------------

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(data, label)``: float32 ``(batch_size * crops, C, H, W)``, int64 ``(N,)``."""
        return self._make(self._next_indices())

    def take(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``n`` batches (``n = test_iter`` for a test pass)."""
        for _ in range(n):
            yield self.next_batch()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()
