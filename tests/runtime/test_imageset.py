"""``netdsl data convert`` and ``netdsl data mean`` (Caffe's convert_imageset and
compute_image_mean) on tiles cut from scikit-learn's sample photos, then training on the
database with ``--data``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.cli import main
from netdsl.runtime.data import LmdbSource, load_mean_file, read_image
from netdsl.runtime.data.transforms import Resize

pytest.importorskip("lmdb", reason="the lmdb package is not installed")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """class folders china/ and flower/, 8 JPEG tiles of 40x48 each, cut from the photos."""
    from sklearn.datasets import load_sample_images

    root = tmp_path_factory.mktemp("photos") / "imgs"
    for name, img in zip(("china", "flower"), load_sample_images().images, strict=True):
        (root / name).mkdir(parents=True)
        for k in range(8):
            y, x = 40 * (k // 4) + 100, 48 * (k % 4) + 100
            Image.fromarray(img[y:y + 40, x:x + 48]).save(root / name / f"{k}.jpg", quality=92)
    return root


def test_convert_writes_caffes_datum_records(photos: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "train_lmdb"
    assert main(["data", "convert", str(photos), "-o", str(out), "--resize", "24x32",
                 "--workers", "2"]) == 0
    assert "wrote 16 images" in capsys.readouterr().out
    db = LmdbSource(out)
    assert len(db) == 16 and db.shape == (3, 24, 32) and db.channel_order == "BGR"
    files = sorted(photos.glob("*/*.jpg"))  # class folders in order, files in order
    for i, path in enumerate(files):
        x, label = db.get(i)
        assert label == (0 if path.parent.name == "china" else 1)
        want = Resize((24, 32)).batch(torch.from_numpy(read_image(path, 3))[None])[0].numpy()
        np.testing.assert_array_equal(x, want[::-1])  # raw pixels, BGR as Caffe's
        assert f"{i:08d}_{path}" in db.describe(i)
    db.close()
    assert main(["data", "convert", str(photos), "-o", str(out)]) == 1  # exists: refused


def test_convert_encoded_and_shuffled(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "enc_lmdb"
    assert main(["data", "convert", str(photos), "-o", str(out), "--encoded", "--shuffle",
                 "--workers", "0"]) == 0
    db = LmdbSource(out)
    files = {str(p) for p in photos.glob("*/*.jpg")}
    order = [db.describe(i).split("_", 1)[1].split("'")[0] for i in range(len(db))]
    assert set(order) == files and order != sorted(order)  # shuffled, every image once
    x, _ = db.get(0)
    np.testing.assert_array_equal(x, read_image(order[0], 3)[::-1])  # the file, decoded
    db.close()


def test_mean_equals_numpys(photos: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "db"
    assert main(["data", "convert", str(photos), "-o", str(out), "--workers", "0"]) == 0
    capsys.readouterr()
    mean_file = tmp_path / "mean.binaryproto"
    assert main(["data", "mean", str(out), "-o", str(mean_file), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    images = np.stack([read_image(p, 3)[::-1] for p in sorted(photos.glob("*/*.jpg"))])
    want = images.astype(np.float64).mean(axis=0)
    got = load_mean_file(mean_file)
    assert got.shape == (3, 40, 48)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(report["channel_means"], want.mean(axis=(1, 2)), atol=1e-3)
    # the folder itself (RGB, as its images are decoded) gives the same mean, reversed
    np.testing.assert_allclose(load_mean_file(mean_file)[::-1],
                               _folder_mean(photos, tmp_path), atol=1e-4)


def _folder_mean(photos: Path, tmp_path: Path) -> np.ndarray:
    assert main(["data", "mean", str(photos), "-o", str(tmp_path / "m2.binaryproto"),
                 "--format", "json"]) == 0
    return load_mean_file(tmp_path / "m2.binaryproto")


def test_train_on_the_converted_database(photos: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "db"
    assert main(["data", "convert", str(photos), "-o", str(db), "--resize", "24x24",
                 "--workers", "0"]) == 0
    spec = tmp_path / "n.net"
    spec.write_text("""
name: "photos"
input { name: "data" shape: [3, 20, 20] }
input { name: "label" shape: [] }
layer { name: "conv" type: Convolution bottom: "data" num_output: 4 kernel_size: 5 stride: 2
        weight_filler: msra() }
layer { name: "fc" type: InnerProduct num_output: 2 weight_filler: msra() }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["fc", "label"] }
data { source: "folder" batch_size: 4 crop: 20 mirror: true scale: 0.00390625 }
solver { base_lr: 0.01 max_iter: 3 snapshot_prefix: "snaps/p" random_seed: 1 }
""")
    capsys.readouterr()
    assert main(["train", str(spec), "--data", str(db), "--format", "json",
                 "--workers", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["workers"] == 1
    assert lines[-1]["event"] == "done" and lines[-1]["iter"] == 3
