"""Tests of netdsl.runtime.data: sources, transforms against hand computations, the loader."""

from __future__ import annotations

import dataclasses
import json
import os
import typing

import numpy as np
import pytest
import torch
from PIL import Image

from netdsl.diagnostics import DataError, render
from netdsl.runtime.data import (
    IMAGENET_EIGVAL,
    IMAGENET_EIGVEC,
    CenterCrop,
    DigitsSource,
    FolderSource,
    ListSource,
    Loader,
    Mirror,
    PCALighting,
    Pipeline,
    RandomCrop,
    ReplicateChannels,
    Resize,
    Scale,
    SubtractMean,
    SyntheticSource,
    TenCrop,
    average_crops,
    build_loader,
    load_mean_file,
    make_source,
)
from netdsl.sections import DataConfig

# -- helpers ---------------------------------------------------------------------------


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_png(path: os.PathLike[str] | str, hwc: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(hwc.astype(np.uint8)).save(path)


def pixels(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tree(tmp_path):
    """root/{cat,dog}/*.png: cat has 2 images (one nested), dog 1; plus a non-image file."""
    root = tmp_path / "tree"
    write_png(root / "dog" / "d0.png", pixels(0, 6, 8))
    write_png(root / "cat" / "c1.png", pixels(1, 6, 8))
    write_png(root / "cat" / "sub" / "c2.PNG", pixels(2, 6, 8))
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def index_source(n: int, shape=(3, 4, 4)) -> SyntheticSource:
    """A synthetic source whose label is the sample's index (one class per sample)."""
    return SyntheticSource(shape, num_classes=n, num_samples=n, seed=3)


# -- digits ----------------------------------------------------------------------------


def test_digits_split_sizes_and_stratification():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    train, test, every = DigitsSource("train"), DigitsSource("test"), DigitsSource("all")
    assert (len(train), len(test), len(every)) == (1437, 360, 1797)
    assert set(train.indices).isdisjoint(test.indices)
    assert sorted([*train.indices, *test.indices]) == list(range(1797))
    total = np.bincount(every.labels(), minlength=10)
    n_test = np.bincount(test.labels(), minlength=10)
    assert (np.bincount(train.labels(), minlength=10) + n_test == total).all()
    assert np.abs(n_test - 0.2 * total).max() <= 1  # stratified: 20% of every class
    # the documented call, exactly
    y = load_digits().target
    _, idx_test = train_test_split(np.arange(1797), test_size=0.2, stratify=y, random_state=0)
    assert list(test.indices) == list(idx_test)


def test_digits_values():
    src = DigitsSource("test")
    x, label = src.get(0)
    assert x.shape == (1, 8, 8) and x.dtype == np.float32
    images = src.all_images()
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.allclose(images * 16, np.round(images * 16))  # was 0..16 integers
    assert 0 <= label <= 9 and src.label_names == tuple("0123456789")
    with pytest.raises(DataError, match="unknown digits split"):
        DigitsSource("validation")


# -- transforms -----------------------------------------------------------------------


def test_resize_bilinear_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    down = Resize((2, 2))(x)
    blocks = x.reshape(1, 2, 2, 2, 2).mean(axis=(2, 4))  # halving: mean of each 2x2 block
    np.testing.assert_allclose(down, blocks)
    a, b = 0.0, 8.0
    up = Resize((1, 4))(np.array([[[a, b]]], dtype=np.float32))
    # source x = (i + 0.5) / 2 - 0.5 = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    np.testing.assert_allclose(up[0, 0], [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b])


def test_resize_shorter_side_and_uint8():
    assert Resize((4,)).out_size(6, 9) == (4, 6)
    assert Resize((4,)).out_size(9, 6) == (6, 4)
    x = np.array([[[0, 255]]], dtype=np.uint8)
    y = Resize((1, 4))(x)
    assert y.dtype == np.uint8
    assert list(y[0, 0]) == [0, 64, 191, 255]  # 63.75 and 191.25, rounded
    same = torch.zeros(1, 1, 5, 5)
    assert Resize((5, 5)).batch(same) is same  # already that size: untouched


def test_replicate_channels():
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    y = ReplicateChannels(3)(x)
    assert y.shape == (3, 2, 2) and all((y[c] == x[0]).all() for c in range(3))


def test_random_crop_offsets_by_hand():
    x = torch.arange(2 * 3 * 7 * 9, dtype=torch.float32).reshape(2, 3, 7, 9)
    out = RandomCrop((4, 5)).batch(x, rng(5))
    u = rng(5).random((2, 2))  # rows' draws, then columns'; H - h + 1 = 4 choices
    h_off = (u[0] * 4).astype(int)
    w_off = (u[1] * 5).astype(int)
    for n in range(2):
        a, b = h_off[n], w_off[n]
        assert torch.equal(out[n], x[n, :, a : a + 4, b : b + 5])


def test_random_crop_of_differently_sized_images():
    xs = [torch.rand(3, 6, 8), torch.rand(3, 9, 6)]
    out = RandomCrop((5, 5)).batch(xs, rng(1))
    u = rng(1).random((2, 2))
    h_off, w_off = (u[0] * np.array([2, 5])).astype(int), (u[1] * np.array([4, 2])).astype(int)
    for n in range(2):
        a, b = h_off[n], w_off[n]
        assert torch.equal(out[n], xs[n][:, a : a + 5, b : b + 5])


def test_center_crop_is_caffes():
    x = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    y = CenterCrop((2, 2))(x)
    np.testing.assert_array_equal(y, x[:, 1:3, 2:4])  # (5-2)//2 = 1, (7-2)//2 = 2


def test_mirror():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    np.testing.assert_array_equal(Mirror(1.0)(x, rng()), x[:, :, ::-1])
    np.testing.assert_array_equal(Mirror(0.0)(x, rng()), x)
    batch = torch.arange(8 * 6, dtype=torch.float32).reshape(8, 1, 2, 3)
    out = Mirror().batch(batch, rng(2))
    flips = rng(2).random(8) < 0.5
    assert 0 < flips.sum() < 8
    for n in range(8):
        expect = batch[n].flip(-1) if flips[n] else batch[n]
        assert torch.equal(out[n], expect)


def test_mean_then_scale_in_caffes_order():
    x = np.full((3, 2, 2), 10, dtype=np.uint8)
    p = Pipeline(mean=SubtractMean(values=(1.0, 2.0, 3.0)), scale=0.5)
    y = p(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[:, 0, 0], [(10 - 1) * 0.5, (10 - 2) * 0.5, (10 - 3) * 0.5])
    np.testing.assert_allclose(SubtractMean(values=(4.0,))(x), np.full((3, 2, 2), 6.0))
    np.testing.assert_allclose(Scale(0.25)(x), np.full((3, 2, 2), 2.5))


def test_pipeline_matches_caffe_data_transformer():
    """Crop + mirror + mean image + scale, against Caffe's per-pixel loop (data_transformer.cpp)."""
    N, C, H, W, crop, scale = 6, 3, 7, 8, 5, 0.125
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (N, C, H, W), dtype=np.uint8))
    mean = np.random.default_rng(1).random((C, H, W)).astype(np.float32) * 100
    p = Pipeline(
        mean=SubtractMean(image=mean), scale=scale, crop=RandomCrop((crop, crop)), mirror=Mirror()
    )
    out = p.finish(x, rng(9)).numpy()
    r = rng(9)  # the draws, in the documented order: rows, columns, mirror flags
    u = r.random((2, N))
    h_offs = (u[0] * (H - crop + 1)).astype(int)
    w_offs = (u[1] * (W - crop + 1)).astype(int)
    mirrors = r.random(N) < 0.5
    datum = x.numpy().astype(np.float32)
    expect = np.zeros((N, C, crop, crop), np.float32)
    for n in range(N):
        h_off, w_off = h_offs[n], w_offs[n]
        for c in range(C):
            for h in range(crop):
                for w in range(crop):
                    top_w = crop - 1 - w if mirrors[n] else w
                    src = datum[n, c, h_off + h, w_off + w]
                    m = mean[c, h_off + h, w_off + w]
                    expect[n, c, h, top_w] = (src - m) * scale
    np.testing.assert_allclose(out, expect, rtol=1e-6)


def test_pca_lighting_adds_alpha_lambda_eigvec():
    x = np.zeros((3, 2, 2), np.float32)
    y = PCALighting(std=0.1)(x, rng(4))
    alpha = rng(4).normal(0.0, 0.1, size=(1, 3))[0]
    eigvec, eigval = np.array(IMAGENET_EIGVEC), np.array(IMAGENET_EIGVAL)
    delta = sum(alpha[i] * eigval[i] * eigvec[:, i] for i in range(3))  # sum_i a_i l_i p_i
    np.testing.assert_allclose(y, np.broadcast_to(delta[:, None, None], x.shape), atol=1e-7)
    # one draw per image, same offset for every pixel; data units and BGR order
    xb = torch.rand(4, 3, 3, 3)
    t = PCALighting(std=0.2, pixel_scale=255.0, bgr=True)
    out = t.batch(xb, rng(7))
    alphas = rng(7).normal(0.0, 0.2, size=(4, 3))
    expect = (alphas * eigval) @ eigvec.T * 255.0
    np.testing.assert_allclose(
        (out - xb).numpy(), np.broadcast_to(expect[:, ::-1, None, None], out.shape), rtol=1e-5
    )
    custom = PCALighting(std=1.0, eigval=(1.0, 0.0, 0.0), eigvec=((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    y = custom(np.zeros((3, 1, 1), np.float32), rng(0))
    assert y[0, 0, 0] == pytest.approx(rng(0).normal(0, 1, (1, 3))[0, 0], rel=1e-6)
    assert y[1, 0, 0] == 0 and y[2, 0, 0] == 0


def test_ten_crop_positions_and_mirrors():
    x = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    crops = TenCrop((3, 4))(x)
    assert crops.shape == (10, 2, 3, 4)
    corners = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]  # TL, TR, BL, BR, centre
    for k, (a, b) in enumerate(corners):
        np.testing.assert_array_equal(crops[k], x[:, a : a + 3, b : b + 4])
        np.testing.assert_array_equal(crops[5 + k], x[:, a : a + 3, b : b + 4][:, :, ::-1])
    batch = TenCrop((3, 4)).batch(torch.from_numpy(np.stack([x, x + 100])))
    assert batch.shape == (20, 2, 3, 4)
    np.testing.assert_array_equal(batch[10:].numpy(), crops + 100)
    out = torch.arange(20, dtype=torch.float32)[:, None].repeat(1, 2)
    np.testing.assert_allclose(average_crops(out, 10).numpy(), [[4.5, 4.5], [14.5, 14.5]])


# -- folder and list sources ----------------------------------------------------------


def test_folder_source(tree):
    src = FolderSource(tree)
    assert src.label_names == ("cat", "dog")
    assert len(src) == 3 and list(src.labels()) == [0, 0, 1]
    x, label = src.get(2)
    assert x.shape == (3, 6, 8) and x.dtype == np.uint8 and label == 1
    np.testing.assert_array_equal(x, pixels(0, 6, 8).transpose(2, 0, 1))
    assert src.paths[1].endswith(os.path.join("sub", "c2.PNG"))
    bgr, _ = FolderSource(tree, bgr=True).get(2)
    np.testing.assert_array_equal(bgr, x[::-1])
    grey, _ = FolderSource(tree, channels=1).get(2)
    assert grey.shape == (1, 6, 8)


def test_folder_errors(tmp_path, tree):
    with pytest.raises(DataError, match="image folder not found") as e:
        FolderSource(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in render(e.value)
    (tree / "empty").mkdir()
    with pytest.raises(DataError, match="without images.*empty"):
        FolderSource(tree)
    flat = tmp_path / "flat"
    write_png(flat / "a.png", pixels(0, 2, 2))
    with pytest.raises(DataError, match="no class folders") as e:
        FolderSource(flat)
    assert "found directly" in e.value.hint


def test_corrupt_image_names_the_file(tree):
    bad = tree / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    src = FolderSource(tree)
    k = src.paths.index(str(bad))
    with pytest.raises(DataError, match="cannot read image") as e:
        src.get(k)
    assert str(bad) in e.value.message
    loader = Loader(src, Pipeline(resize=Resize((6, 8))), batch_size=4)
    with pytest.raises(DataError, match="broken.png"):
        loader.next_batch()


def test_list_source(tmp_path, tree):
    listing = tmp_path / "train.txt"
    listing.write_text("dog/d0.png 7\n\ncat/sub/c2.PNG 2\n")
    src = ListSource(listing, root=tree)
    assert len(src) == 2 and list(src.labels()) == [7, 2]
    x, label = src.get(0)
    np.testing.assert_array_equal(x, pixels(0, 6, 8).transpose(2, 0, 1))
    assert label == 7 and "train.txt:1" in src.describe(0)
    # paths with spaces: the label is after the last space, as in Caffe
    write_png(tree / "cat" / "a b.png", pixels(5, 2, 2))
    listing.write_text("cat/a b.png 1\n")
    assert ListSource(listing, root=tree).paths == [os.path.join(tree, "cat/a b.png")]


def test_list_source_errors(tmp_path, tree):
    listing = tmp_path / "bad.txt"
    listing.write_text("dog/d0.png 1\ncat/c1.png\n")
    with pytest.raises(DataError, match="expected 'path label'") as e:
        ListSource(listing, root=tree)
    assert (e.value.span.path, e.value.span.line) == (str(listing), 2)
    assert f"{listing}:2:1" in render(e.value)
    listing.write_text("dog/d0.png one\n")
    with pytest.raises(DataError, match="label must be an integer") as e:
        ListSource(listing, root=tree)
    assert e.value.span.line == 1 and e.value.span.col == len("dog/d0.png ") + 1
    listing.write_text("dog/d0.png 1\ndog/missing.png 0\n")
    with pytest.raises(DataError, match="image not found: .*missing.png") as e:
        ListSource(listing, root=tree)
    assert e.value.span.line == 2
    with pytest.raises(DataError, match="list file not found"):
        ListSource(tmp_path / "nope.txt")
    listing.write_text("\n\n")
    with pytest.raises(DataError, match="no 'path label' lines"):
        ListSource(listing)


# -- LMDB -----------------------------------------------------------------------------


def test_lmdb_round_trip(tmp_path):
    lmdb = pytest.importorskip("lmdb", reason="the lmdb package is not installed")
    try:
        from netdsl.caffe_pb import Datum
    except ImportError as e:  # written by another engineer; may not exist yet
        pytest.skip(f"netdsl.caffe_pb is not available: {e}")
    import io

    from netdsl.runtime.data import LmdbSource

    raw = np.random.default_rng(0).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    floats = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    hwc = pixels(2, 4, 5)
    png = io.BytesIO()
    Image.fromarray(hwc).save(png, format="PNG")
    records = [
        Datum(channels=3, height=4, width=5, data=raw.tobytes(), label=3),
        Datum(channels=3, height=4, width=5, float_data=floats.ravel().tolist(), label=1),
        Datum(channels=3, height=4, width=5, data=png.getvalue(), encoded=True, label=9),
    ]
    path = tmp_path / "train_lmdb"
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, d in enumerate(records):
            txn.put(f"{k:08d}_x".encode(), d.SerializeToString())
    env.close()
    src = LmdbSource(path)
    assert len(src) == 3 and src.channel_order == "BGR"
    x0, l0 = src.get(0)
    np.testing.assert_array_equal(x0, raw)
    assert x0.dtype == np.uint8 and l0 == 3
    x1, l1 = src.get(1)
    np.testing.assert_array_equal(x1, floats)
    assert l1 == 1
    x2, l2 = src.get(2)
    np.testing.assert_array_equal(x2, hwc.transpose(2, 0, 1)[::-1])  # decoded to BGR
    assert l2 == 9 and "00000002_x" in src.describe(2)
    loader = build_loader(
        DataConfig(source="lmdb", path=str(path), batch_size=2, shuffle=False),
        "train",
        (3, 4, 5),
        seed=0,
    )
    data, labels = loader.next_batch()
    np.testing.assert_array_equal(data[0].numpy(), raw.astype(np.float32))
    assert labels.tolist() == [3, 1]
    src.close()


def test_lmdb_missing(tmp_path):
    pytest.importorskip("lmdb", reason="the lmdb package is not installed")
    with pytest.raises(DataError, match="LMDB database not found") as e:
        make_source("lmdb", path=str(tmp_path / "no_lmdb"))
    assert "no_lmdb" in e.value.message


def test_mean_files(tmp_path):
    mean = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    np.testing.assert_array_equal(load_mean_file(tmp_path / "mean.npy"), mean)
    with pytest.raises(DataError, match="mean file not found"):
        load_mean_file(tmp_path / "nope.npy")
    try:
        from netdsl.caffe_pb import BlobProto
    except ImportError:
        return
    blob = BlobProto(num=1, channels=3, height=4, width=5, data=mean.ravel().tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    np.testing.assert_array_equal(load_mean_file(tmp_path / "mean.binaryproto"), mean)


# -- loader ---------------------------------------------------------------------------


def test_loader_order_and_wrapping():
    test = Loader(index_source(10), batch_size=4)
    got = [test.next_batch()[1].tolist() for _ in range(3)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]  # the cursor wraps, as Caffe's
    assert test.epoch_size == 3 and (test.epoch, test.index) == (1, 2)
    test.reset()
    assert test.next_batch()[1].tolist() == [0, 1, 2, 3]

    train = Loader(index_source(10), batch_size=4, shuffle=True, seed=1)
    stream = np.concatenate([train.next_batch()[1].numpy() for _ in range(5)])
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert list(stream[:10]) != list(stream[10:20])  # reshuffled every epoch


def test_loader_is_deterministic():
    cfg = DataConfig(resize=(12,), crop=10, mirror=True, pca_lighting=0.1, batch_size=16)
    a = build_loader(cfg, "train", (3, 10, 10), seed=5)
    b = build_loader(cfg, "train", (3, 10, 10), seed=5)
    c = build_loader(cfg, "train", (3, 10, 10), seed=6)
    for _ in range(3):
        (xa, ya), (xb, yb), (xc, _) = a.next_batch(), b.next_batch(), c.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)


@pytest.mark.parametrize("consumed", [3, 22, 23, 50])  # 22/23: around the epoch boundary
def test_loader_resume(consumed):
    cfg = DataConfig(
        resize=(12,), crop=10, mirror=True, pca_lighting=0.1, mean_value=(0.5,), batch_size=64
    )
    original = build_loader(cfg, "train", (3, 10, 10), seed=11)
    for _ in range(consumed):
        original.next_batch()
    saved = json.loads(json.dumps(original.state()))  # must survive JSON
    resumed = build_loader(cfg, "train", (3, 10, 10), seed=999)  # the state's seed wins
    resumed.load_state(saved)
    for _ in range(4):
        (x1, y1), (x2, y2) = original.next_batch(), resumed.next_batch()
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert resumed.state() == original.state()


def test_loader_resume_uncached_source(tree):
    src = FolderSource(tree)
    pipe = Pipeline(resize=Resize((5,)), crop=RandomCrop((4, 4)), mirror=Mirror())
    a = Loader(src, pipe, batch_size=2, shuffle=True, seed=3, cache_bytes=0)
    a.next_batch()
    b = Loader(FolderSource(tree), pipe, batch_size=2, shuffle=True, seed=3, cache_bytes=0)
    b.load_state(a.state())
    for _ in range(3):
        assert torch.equal(a.next_batch()[0], b.next_batch()[0])


def test_load_state_rejects_other_data():
    a = Loader(index_source(10), batch_size=4)
    with pytest.raises(DataError, match="for 10 samples in batches of 4"):
        Loader(index_source(12), batch_size=4).load_state(a.state())
    with pytest.raises(DataError, match="not valid"):
        a.load_state({"epoch": 1})


def test_loader_matches_pipeline_on_single_images(tree):
    src = FolderSource(tree)
    pipe = Pipeline(
        resize=Resize((5, 7)),
        mean=SubtractMean(values=(100.0, 110.0, 120.0)),
        scale=0.02,
        crop=CenterCrop((4, 4)),
    )
    data, labels = Loader(src, pipe, batch_size=3).next_batch()
    for n in range(3):
        np.testing.assert_allclose(data[n].numpy(), pipe(src.get(n)[0]), rtol=1e-6)
    assert labels.tolist() == [0, 0, 1]


# -- config ---------------------------------------------------------------------------


def test_build_loader_digits():
    train = build_loader(DataConfig(batch_size=32), "train", (3, 28, 28), seed=0)
    assert train.num_samples == 1437 and train.epoch_size == 45 and train.shuffle
    x, y = train.next_batch()
    assert x.shape == (32, 3, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x[:, 0], x[:, 2])  # grey replicated
    assert 0.0 <= x.min() and x.max() <= 1.0
    test = build_loader(DataConfig(batch_size=100), "test", (1, 8, 8), seed=0)
    x, y = test.next_batch()
    src = DigitsSource("test")
    np.testing.assert_array_equal(x[5].numpy(), src.get(5)[0])  # no resize needed
    assert y[5] == src.get(5)[1] and test.epoch_size == 4


def test_build_loader_ten_crops():
    cfg = DataConfig(resize=(12, 12), crop=10, test_crops=10, batch_size=4)
    loader = build_loader(cfg, "test", (3, 10, 10), seed=0)
    assert loader.crops == 10
    x, y = loader.next_batch()
    assert x.shape == (40, 3, 10, 10) and y.shape == (4,)
    big = Resize((12, 12))(np.repeat(DigitsSource("test").get(0)[0], 3, axis=0))
    np.testing.assert_allclose(x[:10].numpy(), TenCrop((10, 10))(big))


def test_build_loader_config_errors(tmp_path):
    shape = (3, 28, 28)
    cases = [
        (DataConfig(crop=24), "crop 24 makes 24x24 images"),
        (DataConfig(resize=(32,)), "keeps each image's aspect ratio"),
        (DataConfig(resize=(32, 32)), "the net's input is 28x28"),
        (DataConfig(mean_value=(1.0, 2.0)), "2 mean values for a 3-channel input"),
        (DataConfig(channels=3, pca_lighting=0.1), "net's input has 1"),
        (DataConfig(source="folder", path=str(tmp_path / "x")), "image folder not found"),
    ]
    for cfg, message in cases:
        in_shape = (1, 28, 28) if cfg.pca_lighting else shape
        with pytest.raises(DataError, match=message):
            build_loader(cfg, "train", in_shape, seed=0)
    # a too-small image is reported naming the sample (in-memory data: at once)
    with pytest.raises(DataError, match="digits train sample .* 8x8, smaller than the 28x28"):
        build_loader(DataConfig(crop=28), "train", shape, seed=0)


def test_data_config_fields_are_documented_and_validated():
    hints = typing.get_type_hints(DataConfig)
    for f in dataclasses.fields(DataConfig):
        assert f.metadata.get("doc"), f.name
        assert len(f.metadata["doc"]) < 90, f.name
        assert f.name in hints
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        DataConfig(source="digit")
    # a path-taking source without a path is refused where the data is needed, after
    # --data had its chance to give one (tests/runtime/test_train.py)
    assert DataConfig(source="folder").path == ""
    with pytest.raises(ValueError, match="test_crops 10 needs crop"):
        DataConfig(test_crops=10)
    with pytest.raises(ValueError, match="mean_value or mean_file"):
        DataConfig(mean_value=(1.0,), mean_file="m.npy")
    with pytest.raises(DataError, match="unknown data source") as e:
        make_source("lmbd", path="x")
    assert e.value.hint == "did you mean 'lmdb'?"


def test_data_config_with_the_generic_converter():
    fields = pytest.importorskip("netdsl.fields", reason="netdsl.fields is not available")
    rows = {r[0]: r for r in fields.reference_rows(DataConfig)}
    assert rows["mean_value"][1] == "[float]" and rows["crop"][2] == "0"


def test_synthetic_source():
    a = make_source("synthetic", shape=(3, 5, 5), num_classes=4, num_samples=9, seed=1)
    b = SyntheticSource((3, 5, 5), num_classes=4, num_samples=9, seed=1)
    x, label = a.get(6)
    assert x.shape == (3, 5, 5) and x.dtype == np.float32 and label == 2
    np.testing.assert_array_equal(x, b.get(6)[0])
    np.testing.assert_array_equal(a.all_images()[6], x)
    assert 0.0 <= a.all_images().min() and a.all_images().max() <= 1.0
    timing = build_loader(
        DataConfig(source="synthetic", num_samples=10, batch_size=8), "test", (3, 6, 6), 0
    )
    assert timing.next_batch()[0].shape == (8, 3, 6, 6)
