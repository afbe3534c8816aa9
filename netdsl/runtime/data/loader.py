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
the *fetch*: per sample, in ``workers`` processes when there are any (torch's DataLoader,
in order, a bounded prefetch), else inline, where it is cached while the whole data set
fits in ``cache_bytes``; sources held in memory (digits, synthetic) are fetched all at once
up front. The *finish* (mean, crop, scale, mirror, lighting) runs on whole batches,
vectorised in torch, on ``device`` if one is given: the batch crosses to it as uint8 at
the stored size. Random numbers are drawn on the host, in batch order, by the finish; so
the batches are the same, bit for bit, with 0, 1 or N workers, and on any device.
"""

from __future__ import annotations

import gc
import math
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from netdsl.diagnostics import DataError

from .base import BadImage, SampleSource
from .labels import LabelRange, check_labels
from .transforms import Pipeline, to_tensor

__all__ = ["Loader", "RawBatch", "average_crops", "STATE_FORMAT"]

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


@dataclass
class RawBatch:
    """A fetched batch before its finish: prefix outputs (stacked when they have one
    size, else a list), labels, and the loader position after it."""

    x: torch.Tensor | list[torch.Tensor]
    y: torch.Tensor
    position: tuple[int, int]
    skipped: tuple[str, ...] = ()  # unreadable images replaced in this batch

    def pin_memory(self) -> RawBatch:
        """Page-locked copies, for a non-blocking copy to a GPU (torch's DataLoader calls
        this in its pinning thread)."""
        x = self.x.pin_memory() if isinstance(self.x, torch.Tensor) else [
            t.pin_memory() for t in self.x]
        return RawBatch(x, self.y.pin_memory(), self.position, self.skipped)


@dataclass
class _Failure:
    """A sample that could not be fetched in a worker: the message to raise in the main
    process (a worker's exception would arrive wrapped in its traceback)."""

    message: str
    hint: str | None


#: With skipping, this many unreadable images in a row are an error, not a skip.
_MAX_SKIPPED_IN_A_ROW = 64


class _Fetch:
    """The deterministic stage for a batch of indices: read, decode, resize, replicate,
    check. Picklable, so that worker processes run it; inline it also caches."""

    def __init__(self, source: SampleSource, pipeline: Pipeline,
                 out_shape: tuple[int, ...] | None, cache_bytes: int,
                 labels: LabelRange | None = None, skip_bad: bool = False) -> None:
        self.source, self.pipeline, self.out_shape = source, pipeline, out_shape
        self.cache_bytes = cache_bytes
        self.labels = labels  # checked as each sample is read (not known up front)
        self.skip_bad = skip_bad
        self._skipped: list[str] = []
        self._n = len(source)
        self._cache: list[tuple[torch.Tensor, int] | None] | None = None
        self._cache_decided = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # a worker starts with an empty cache
        state["_cache"], state["_cache_decided"] = None, True
        return state

    def describe(self, i: int) -> str:
        describe = getattr(self.source, "describe", None)
        name: str = describe(int(i)) if describe else f"sample {i}"
        return name

    def __getitem__(self, key: tuple[np.ndarray, tuple[int, int]]) -> RawBatch | _Failure:
        """In a worker: the batch, or what went wrong, naming the sample."""
        idx, position = key
        try:
            return self.batch(idx, position)
        except DataError as e:
            return _Failure(e.message, e.hint)
        except Exception as e:  # noqa: BLE001  # reported in the main process, with its sample
            where = next((self.describe(i) for i in idx), "a sample")
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            return _Failure(f"reading {where} (or another sample of its batch) failed: {last}",
                            "check the data; a corrupt or truncated file fails like this")

    def batch(self, idx: np.ndarray, position: tuple[int, int]) -> RawBatch:
        self._skipped = []
        items = [self.readable(int(i)) for i in idx]
        y = torch.tensor([lab for _, lab in items], dtype=torch.int64)
        tensors = [t for t, _ in items]
        x: torch.Tensor | list[torch.Tensor]
        if all(t.shape == tensors[0].shape for t in tensors):
            x = torch.stack(tensors)
        elif self.pipeline.crop is None:
            odd = next(k for k, t in enumerate(tensors) if t.shape != tensors[0].shape)
            a, b = tensors[0].shape, tensors[odd].shape
            raise DataError(
                f"images differ in size: {self.describe(idx[0])} is {a[1]}x{a[2]}, "
                f"{self.describe(idx[odd])} is {b[1]}x{b[2]}",
                hint="resize them to one size ([H, W]), or crop",
            )
        else:
            x = tensors
        return RawBatch(x, y, position, tuple(self._skipped))

    def readable(self, i: int) -> tuple[torch.Tensor, int]:
        """Sample ``i``, or with ``skip_bad`` the next sample that can be read in place of
        an unreadable image (the same one whatever the workers or processes)."""
        if not self.skip_bad:
            return self.item(i)
        for k in range(min(self._n, _MAX_SKIPPED_IN_A_ROW)):
            j = (i + k) % self._n
            try:
                hit = self.item(j)
            except BadImage:
                self._skipped.append(self.describe(j))
                continue
            if self._cache is not None and k:
                self._cache[i] = hit
            return hit
        raise DataError(f"{min(self._n, _MAX_SKIPPED_IN_A_ROW)} images in a row from "
                        f"{self.describe(i)} on cannot be read",
                        hint="check the data: is this the right folder?")

    def item(self, i: int) -> tuple[torch.Tensor, int]:
        if self._cache is not None and (hit := self._cache[i]) is not None:
            return hit
        arr, label = self.source.get(int(i))
        what = self.describe(i)
        if self.labels is not None and self.labels.bad(int(label)):
            raise self.labels.error(int(label), what)
        t = self.pipeline.prefix(to_tensor(_to_array(arr, what))[None])[0]
        self.check(t, i)
        item = (t, int(label))
        if not self._cache_decided:
            self._cache_decided = True
            if t.element_size() * t.nelement() * self._n <= self.cache_bytes:
                self._cache = [None] * self._n
        if self._cache is not None:
            self._cache[i] = item
        return item

    def check(self, t: torch.Tensor, i: int) -> None:
        c, h, w = t.shape
        p = self.pipeline
        what = self.describe(i)
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


class Loader:
    """Endless, reproducible batches of ``source`` transformed by ``pipeline``.

    ``out_shape`` (the net's ``(C, H, W)``), if given, is checked for every sample, so a
    mismatch is reported naming the sample rather than failing inside the net.
    ``workers`` processes fetch the samples (0: inline); ``device`` is where the finish
    runs and the batches are returned (default: the CPU). ``labels``: the labels the net
    takes, checked here where the source knows them, else as each sample is read.
    ``on_bad_image``: ``"fail"`` (an unreadable image is an error naming it) or ``"skip"``
    (the next readable sample takes its place; :attr:`skipped` names them).
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
        workers: int = 0,
        prefetch: int = 2,
        device: torch.device | str | None = None,
        rank: int = 0,
        world: int = 1,
        labels: LabelRange | None = None,
        on_bad_image: str = "fail",
    ) -> None:
        if on_bad_image not in ("skip", "fail"):
            raise ValueError(f"on_bad_image must be 'skip' or 'fail', not {on_bad_image!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of the {world} processes")
        if workers < 0 or prefetch < 1:
            raise ValueError(f"workers must be >= 0 and prefetch >= 1, got {workers}, {prefetch}")
        n = len(source)
        if n == 0:
            raise DataError("the data source has no samples")
        self.source = source
        self.pipeline = pipeline or Pipeline()
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.out_shape = tuple(out_shape) if out_shape is not None else None
        self.prefetch = int(prefetch)
        self.device = torch.device(device) if device is not None else None
        self.rank, self.world = int(rank), int(world)
        self._n = n
        unchecked = labels is not None and not check_labels(source, labels)
        self._fetch = _Fetch(source, self.pipeline, self.out_shape, int(cache_bytes),
                             labels if unchecked else None, on_bad_image == "skip")
        #: unreadable images replaced so far (``on_bad_image="skip"``), each named once
        self.skipped: dict[str, None] = {}
        self._set_seed(seed)
        self._stacked: torch.Tensor | None = None
        self._stacked_labels: torch.Tensor | None = None
        self._precompute()
        # in-memory data has nothing to decode: no worker would have work to do
        self.workers = int(workers) if self._stacked is None else 0
        self._batches: Iterator[RawBatch | _Failure] | None = None

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
    def global_batch(self) -> int:
        """Samples per step over all processes: ``batch_size * world``."""
        return self.batch_size * self.world

    @property
    def epoch_size(self) -> int:
        """Steps per epoch: ``ceil(num_samples / global_batch)`` (every sample seen once)."""
        return math.ceil(self._n / self.global_batch)

    @property
    def crops(self) -> int:
        """Rows of data per sample: 10 with 10-crop testing, else 1 (see ``average_crops``)."""
        return self.pipeline.crops

    @property
    def label_names(self) -> tuple[str, ...] | None:
        return getattr(self.source, "label_names", None)

    def _indices_from(self, epoch: int, index: int) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
        """This process's index batches from a position on, each with the position after
        it: its share (``rank``) of each global batch of ``batch_size * world`` samples."""
        order = _Order(self.seed, self.shuffle, self._n, self.global_batch)
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        return ((idx[lo:hi], pos) for idx, pos in order.batches(epoch, index))

    def reset(self) -> None:
        """Back to the first batch of epoch 0, with the random stream restarted."""
        self._set_seed(self.seed)
        self._restart()

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
            "world": self.world,
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
            world = int(state.get("world", 1))
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
        if world != self.world:
            raise DataError(
                f"the saved data position is for {world} process{'es' if world != 1 else ''}; "
                f"this run has {self.world}",
                hint=f"resume with the same number of processes (--nproc {world}): each one's "
                "share of the data depends on it",
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
        self._restart()

    # -- fetching ----------------------------------------------------------------------

    def _restart(self) -> None:
        """Drop what was fetched ahead (and the workers): the position has moved. Nothing
        else refers to the worker iterator, so dropping it stops its workers at once."""
        self._batches = None

    def close(self) -> None:
        """Stop the worker processes (a later batch starts them again)."""
        self._restart()

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
        self._fetch.check(stacked[0], 0)
        labels = self.source.labels() if hasattr(self.source, "labels") else None
        if labels is None:
            labels = np.array([self.source.get(i)[1] for i in range(self._n)])
        self._stacked = stacked
        self._stacked_labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))

    def _raw_batches(self) -> Iterator[RawBatch | _Failure]:
        keys = self._indices_from(self.epoch, self.index)
        if self._stacked is not None and self._stacked_labels is not None:
            stacked, labels = self._stacked, self._stacked_labels
            return (RawBatch(stacked[torch.from_numpy(idx)], labels[torch.from_numpy(idx)],
                             pos) for idx, pos in keys)
        if self.workers == 0:
            return (self._fetch.batch(idx, pos) for idx, pos in keys)
        from torch.utils.data import DataLoader

        # A source whose handles must not cross a fork (an LMDB environment) gets workers
        # started afresh, each opening its own; the others are forked (quick to start).
        context = None if getattr(self.source, "fork_safe", True) else "spawn"
        loader: DataLoader[RawBatch | _Failure] = DataLoader(
            self._fetch,  # type: ignore[arg-type]  # a map-style dataset keyed by index batches
            sampler=keys,  # any iterable of keys works as the sampler, consumed in order
            batch_size=None, num_workers=self.workers, prefetch_factor=self.prefetch,
            collate_fn=_identity, pin_memory=self.device is not None
            and self.device.type == "cuda", worker_init_fn=_worker_init,
            multiprocessing_context=context)
        return iter(loader)

    def start(self) -> None:
        """Start the workers now (they are forked from the calling thread: call it from
        the main thread, before a feeder thread takes the batches)."""
        if self._batches is None:
            self._batches = self._raw_batches()

    def next_raw(self) -> RawBatch:
        """The next fetched batch (before its finish), moving the position past it."""
        self.start()
        assert self._batches is not None
        try:
            raw = next(self._batches)
        except RuntimeError as e:
            if "DataLoader worker" not in str(e):
                raise
            self._restart()
            raise DataError(f"a data worker stopped: {e}",
                            hint="a worker killed by the system often means it ran out of "
                            "memory: use fewer --workers") from None
        if isinstance(raw, _Failure):
            self._restart()
            raise DataError(raw.message, hint=raw.hint)
        self.skipped.update(dict.fromkeys(raw.skipped))
        self.epoch, self.index = raw.position
        return raw

    def finish(self, raw: RawBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The random stage of a fetched batch, on ``device``: ``(data, label)``."""
        y = raw.y if self.device is None else raw.y.to(self.device, non_blocking=True)
        part = (self.rank * self.batch_size, self.global_batch)
        return self.pipeline.finish(raw.x, self._rng, self.device, part), y

    # -- batches ----------------------------------------------------------------------

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(data, label)``: float32 ``(batch_size * crops, C, H, W)``, int64 ``(N,)``."""
        return self.finish(self.next_raw())

    def take(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``n`` batches (``n = test_iter`` for a test pass)."""
        for _ in range(n):
            yield self.next_batch()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch()


class _Order:
    """Which samples each batch holds, from a position on: a fresh shuffle per epoch drawn
    from ``SeedSequence([seed, 0, epoch])``, or the samples in order. A separate object, so
    that the worker iterator reading it keeps no reference to the loader."""

    def __init__(self, seed: int, shuffle: bool, n: int, batch_size: int) -> None:
        self.seed, self.shuffle, self.n, self.batch_size = seed, shuffle, n, batch_size
        self._perm_epoch = -1
        self._perm: np.ndarray = np.arange(n)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return self._perm
        if epoch != self._perm_epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, epoch]))
            self._perm = rng.permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def batches(self, epoch: int, index: int) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
        while True:
            parts = []
            need = self.batch_size
            while need:
                take = self.order(epoch)[index : index + need]
                parts.append(take)
                need -= len(take)
                index += len(take)
                if index == self.n:
                    epoch, index = epoch + 1, 0
            yield (np.concatenate(parts) if len(parts) > 1 else parts[0].copy()), (epoch, index)


def _identity(batch: Any) -> Any:
    return batch


def _worker_init(worker_id: int) -> None:
    """Each worker opens its own handles (an LMDB environment per process) and decodes
    with one thread: the workers are the parallelism. The garbage a forked worker inherits
    is frozen: collecting it there would run finalizers meant for the parent (a worker
    iterator of the parent's shutting down workers that are not the child's)."""
    gc.freeze()
    torch.set_num_threads(1)
