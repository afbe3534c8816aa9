"""Images per second of AlexNet's TRAIN input pipeline, by source and worker count.

Builds a folder of 341x256 JPEGs (crops of scikit-learn's two sample photos, upscaled),
then a raw and an encoded LMDB made from it with ``netdsl data convert``, and times
``Loader.next_batch()`` (decode, resize to 256 on the shorter side, random 227 crop,
mirror, mean, PCA lighting; as ``specs/alexnet.net`` says) for 0, 1, 2 and all-core workers
on each; then the finish alone (crop, mirror, mean, lighting) on a uint8 batch already
in memory, on the CPU and, where there is one, the GPU.

    python benchmarks/pipeline.py [--images 256] [--batch 64] [--batches 8] [--device cuda]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netdsl.runtime.data import build_loader  # noqa: E402
from netdsl.runtime.data.imageset import ConvertOptions, convert_imageset  # noqa: E402
from netdsl.sections import DataConfig  # noqa: E402

MEAN = (123.68, 116.78, 103.94)


def make_folder(root: Path, n: int) -> Path:
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(p).resize((1280, 960), Image.BICUBIC)
              for p in load_sample_images().images]
    g = np.random.default_rng(0)
    for i in range(n):
        photo = photos[i % 2]
        x, y = int(g.integers(0, 1280 - 682)), int(g.integers(0, 960 - 512))
        tile = photo.crop((x, y, x + 682, y + 512)).resize((341, 256), Image.BILINEAR)
        path = root / f"c{i % 10}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        tile.save(buf, "JPEG", quality=90)
        path.write_bytes(buf.getvalue())
    return root


def rate(cfg: DataConfig, workers: int, batches: int) -> float:
    """Images/s of the whole pipeline; nothing cached (an ImageNet does not fit a cache)."""
    loader = build_loader(cfg, "train", (3, 227, 227), seed=0, workers=workers, cache_bytes=0)
    loader.next_batch()  # start the workers, warm the caches of the OS
    t = time.perf_counter()
    for _ in range(batches):
        x, _ = loader.next_batch()
    dt = time.perf_counter() - t
    loader.close()
    del x
    return batches * cfg.batch_size / dt


def finish_rate(cfg: DataConfig, batches: int, device: str) -> float:
    """Images/s of the finish alone on a uint8 batch at the stored size, on ``device``."""
    loader = build_loader(cfg, "train", (3, 227, 227), seed=0, workers=0)
    x = torch.randint(0, 256, (cfg.batch_size, 3, 256, 256), dtype=torch.uint8)
    if device != "cpu":
        x = x.pin_memory()
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    loader.pipeline.finish(x, rng, torch.device(device))
    sync()
    t = time.perf_counter()
    for _ in range(batches):
        loader.pipeline.finish(x, rng, torch.device(device))
    sync()
    return batches * cfg.batch_size / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    counts = sorted({0, 1, 2, max(0, cores - 1)})
    common = {"batch_size": args.batch, "crop": 227, "mirror": True, "mean_value": MEAN,
              "pca_lighting": 0.1}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "imgs", args.images)
        sources = {"folder of JPEGs": DataConfig(source="folder", path=str(folder),
                                                 resize=(256,), **common)}
        for name, encoded in (("raw LMDB", False), ("encoded LMDB", True)):
            db = Path(tmp) / name.replace(" ", "_")
            convert_imageset(str(folder), str(db), ConvertOptions(
                resize=(256, 256), encoded=encoded, shuffle=True), workers=max(counts))
            sources[name] = DataConfig(source="lmdb", path=str(db), **common)
        print(f"AlexNet TRAIN pipeline, {args.images} images, batch {args.batch}, "
              f"{cores} cores; images/s by data workers")
        print(f"{'source':16}" + "".join(f"{w:>10}" for w in counts))
        for name, cfg in sources.items():
            row = [rate(cfg, w, args.batches) for w in counts]
            print(f"{name:16}" + "".join(f"{r:10.0f}" for r in row))
        print("the finish alone (crop, mirror, mean, lighting), uint8 256x256 batches in:")
        devices = ["cpu"] + ([args.device] if args.device else [])
        for dev in devices:
            r = finish_rate(sources["raw LMDB"], args.batches * 4, dev)
            print(f"  {dev:6} {r:10.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
