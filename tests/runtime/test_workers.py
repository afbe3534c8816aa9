"""The input pipeline in worker processes and on the training device: the batches stay a
function of (seed, position), whatever the worker count or the device; a resume continues
exactly with another worker count; a worker's failure is an error naming the file."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.diagnostics import DataError
from netdsl.runtime.data import (
    Feeder,
    FolderSource,
    Loader,
    Mirror,
    PCALighting,
    Pipeline,
    RandomCrop,
    Resize,
    Source,
    SubtractMean,
    build_loader,
    make_source,
)
from netdsl.runtime.data.imageset import convert_imageset
from netdsl.runtime.data.transforms import to_tensor
from netdsl.sections import DataConfig


def _folder(root: Path, n: int = 24, varied: bool = False) -> Path:
    """``n`` images in 3 classes, as JPEG (and one PNG), of one size or of varied sizes."""
    g = np.random.default_rng(0)
    for i in range(n):
        h, w = (20 + i % 5, 24 + i % 3) if varied else (20, 24)
        arr = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = root / f"c{i % 3}" / f"{i:03d}.{'png' if i == 5 else 'jpg'}"
        os.makedirs(path.parent, exist_ok=True)
        Image.fromarray(arr).save(path, quality=90)
    return root


def _pipeline() -> Pipeline:
    return Pipeline(resize=Resize((18,)), mean=SubtractMean(values=(120.0, 110.0, 100.0)),
                    scale=0.5, crop=RandomCrop((16, 16)), mirror=Mirror(0.5),
                    lighting=PCALighting(0.1, pixel_scale=255.0))


def _loader(root: Path, workers: int, **kw: object) -> Loader:
    return Loader(FolderSource(root), _pipeline(), batch_size=5, shuffle=True, seed=7,
                  workers=workers, cache_bytes=0, **kw)  # type: ignore[arg-type]


def _take(loader: Loader | Feeder, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [loader.next_batch() for _ in range(n)]


def _same(a: list[tuple[torch.Tensor, torch.Tensor]],
          b: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya.cpu(), yb.cpu())
        assert torch.equal(xa.cpu(), xb.cpu())  # bit for bit


@pytest.mark.parametrize("varied", [False, True], ids=["one size", "varied sizes"])
def test_same_batches_with_0_1_and_2_workers(tmp_path: Path, varied: bool) -> None:
    root = _folder(tmp_path / "imgs", varied=varied)
    ref = _take(_loader(root, 0), 12)  # two epochs and a half: reshuffles and wraps
    for workers in (1, 2):
        loader = _loader(root, workers)
        assert loader.workers == workers
        _same(ref, _take(loader, 12))


def test_resume_with_another_worker_count(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    straight = _take(_loader(root, 0), 9)
    first = _loader(root, 2)
    _take(first, 4)
    saved = first.state()
    second = _loader(root, 0)
    second.load_state(saved)
    _same(straight[4:], _take(second, 5))
    third = _loader(root, 2)  # and back to two workers, from the same state
    third.load_state(saved)
    _same(straight[4:], _take(third, 5))


def test_the_device_path_equals_the_cpu_path(tmp_path: Path) -> None:
    """The finish on a device (here the CPU named as one; CUDA in the gpu-marked copy)
    makes the same crops, flips and lighting as without a device."""
    root = _folder(tmp_path / "imgs")
    _same(_take(_loader(root, 0), 6), _take(_loader(root, 0, device="cpu"), 6))


@pytest.mark.gpu
def test_the_cuda_path_equals_the_cpu_path(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    cpu = _take(_loader(root, 0), 6)
    gpu = _take(_loader(root, 2, device="cuda"), 6)
    assert gpu[0][0].device.type == "cuda"
    _same(cpu, gpu)


def test_a_corrupt_jpeg_in_a_worker_names_the_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", n=6)
    bad = root / "c0" / "000.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    loader = Loader(FolderSource(root), Pipeline(resize=Resize((20, 24))), batch_size=6,
                    workers=2, cache_bytes=0)
    with pytest.raises(DataError) as e:
        loader.next_batch()
    assert str(bad) in e.value.message


def test_the_feeder_hands_out_the_loaders_batches_and_their_positions(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    ref_loader = _loader(root, 0)
    ref = []
    states = []
    for _ in range(6):
        ref.append(ref_loader.next_batch())
        states.append(ref_loader.state())
    feeder = Feeder(_loader(root, 2), depth=3)
    got = _take(feeder, 3)
    _same(ref[:3], got)
    assert feeder.state() == states[2]  # what was handed out, not what was made ahead
    feeder.close()
    assert feeder.loader.state() == states[2]
    _same(ref[3:], _take(feeder, 3))  # restarts where it stopped
    feeder.load_state(states[0])
    _same(ref[1:3], _take(feeder, 2))
    feeder.close()
    assert feeder.wait_seconds >= 0


def test_build_loader_workers_from_the_config_and_the_flag(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    cfg = DataConfig(source="folder", path=str(root), batch_size=4, resize=(16,), crop=16,
                     workers=2)
    assert build_loader(cfg, "train", (3, 16, 16), seed=0).workers == 2
    assert build_loader(cfg, "train", (3, 16, 16), seed=0, workers=0).workers == 0
    auto = build_loader(DataConfig(source="folder", path=str(root), resize=(16,), crop=16),
                        "train", (3, 16, 16), seed=0)
    assert auto.workers == max(0, min(16, (os.cpu_count() or 1) - 1))
    digits = build_loader(DataConfig(source="digits", batch_size=8, workers=4), "train",
                          (1, 8, 8), seed=0)
    assert digits.workers == 0  # held in memory: nothing to decode


@pytest.mark.parametrize("varied", [False, True], ids=["one size", "varied sizes"])
def test_ranks_share_the_global_batch_without_overlap(tmp_path: Path, varied: bool) -> None:
    """Two processes' batches of B, side by side, are one process's batches of 2B: the
    same samples (none twice, none lost) with the same crops, flips and lighting."""
    root = _folder(tmp_path / "imgs", varied=varied)

    def loader(batch: int, rank: int, world: int) -> Loader:
        return Loader(FolderSource(root), _pipeline(), batch_size=batch, shuffle=True, seed=7,
                      cache_bytes=0, rank=rank, world=world)

    whole = _take(loader(6, 0, 1), 9)  # 24 images: 4 steps an epoch, two epochs and more
    parts = [_take(loader(3, r, 2), 9) for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts, strict=True):
        assert torch.equal(y, torch.cat([y0, y1]))
        assert torch.equal(x, torch.cat([x0, x1]))
    a = loader(3, 0, 2)
    assert a.epoch_size == 4 and a.global_batch == 6
    with pytest.raises(DataError, match="for 1 process; this run has 2"):
        a.load_state(loader(3, 0, 1).state())


def _source(kind: str, tmp_path: Path) -> Source:
    """A small source of each kind: 24 images (folder, list, LMDB, synthetic) or the digits."""
    if kind == "digits":
        return make_source("digits", split="train")
    if kind == "synthetic":
        return make_source("synthetic", shape=(3, 20, 24), num_classes=3, num_samples=24)
    root = _folder(tmp_path / "imgs")
    if kind == "folder":
        return make_source("folder", root=root)
    files = sorted(root.glob("*/*.*"))
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p.relative_to(root)} {p.parent.name[1]}\n" for p in files))
    if kind == "list":
        return make_source("list", path=listing, root=root)
    pytest.importorskip("lmdb", reason="the lmdb package is not installed")
    db = tmp_path / "lmdb"
    convert_imageset(str(root), str(db))
    return make_source("lmdb", path=db)


@pytest.mark.parametrize("kind", ["digits", "folder", "list", "lmdb", "synthetic"])
def test_every_source_shards_by_rank(tmp_path: Path, kind: str) -> None:
    """Each source, two ranks with a worker each: side by side, exactly the batches of one
    process with twice the batch (crops and flips too), over epoch boundaries; over an
    epoch, every sample once."""
    source = _source(kind, tmp_path)
    augment = Pipeline(resize=Resize((18,)), crop=RandomCrop((16, 16)), mirror=Mirror(0.5))

    def loader(pipe: Pipeline, batch: int, rank: int, world: int, workers: int) -> Loader:
        return Loader(source, pipe, batch_size=batch, shuffle=True, seed=3, workers=workers,
                      cache_bytes=0, rank=rank, world=world)

    whole = _take(loader(augment, 8, 0, 1, 0), 7)
    parts = [_take(loader(augment, 4, r, 2, 1), 7) for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts, strict=True):
        assert torch.equal(y, torch.cat([y0, y1]))
        assert torch.equal(x, torch.cat([x0, x1]))

    plain = Pipeline(resize=Resize((18,)))
    n = len(source)
    steps = -(-n // 8)
    ranks = [_take(loader(plain, 4, r, 2, 0), steps) for r in (0, 1)]
    got = [row for (x0, _), (x1, _) in zip(*ranks, strict=True) for row in torch.cat([x0, x1])]
    key = lambda t: t.float().numpy().tobytes()  # noqa: E731
    want = [plain.prefix(to_tensor(np.asarray(source.get(i)[0]))[None])[0] for i in range(n)]
    assert Counter(map(key, got[:n])) == Counter(map(key, want))
