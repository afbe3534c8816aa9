"""netdsl classify / features and the Transformer (netdsl.runtime.predict), on the digits
written as PNG files: classify must give, image for image, the labels that ``netdsl
test``'s path (its loader and prediction blob) gives for the same files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import DataError, UsageError
from netdsl.runtime import evaluate
from netdsl.runtime.data import DigitsSource, build_loader
from netdsl.runtime.evaluate import prediction_blob
from netdsl.runtime.loading import data_config, feeds_of
from netdsl.runtime.predict import Transformer, classify, extract_features, image_files
from netdsl.runtime.train import train
from netdsl.weights import load_weights
from tests.runtime.helpers import write_spec

pytestmark = pytest.mark.usefixtures("one_thread")

FOLDER_DATA = ('data {{ source: "folder"  path: "{root}"  batch_size: 16  channels: 1  '
               'scale: 0.00390625 }}')


@pytest.fixture
def one_thread():  # as tests/runtime's: tiny ops vary with threads on a shared machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_pngs(root: Path, split: str) -> list[Path]:
    """The digits of ``split`` as 8x8 grey PNGs in class folders, in the folder source's
    order (classes, then names, sorted)."""
    src = DigitsSource(split)
    files = []
    for i in range(len(src)):
        image, label = src.get(i)
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:04d}.png"
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8), mode="L").save(path)
        files.append(path)
    return sorted(files, key=lambda p: (p.parent.name, p.name))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny spec trained briefly on the PNG digits; its weights and test files."""
    tmp = tmp_path_factory.mktemp("predict")
    write_pngs(tmp / "pngs", "train")
    test_files = write_pngs(tmp / "pngs", "test")
    spec = write_spec(tmp / "tiny.net", dropout=False,
                      data=FOLDER_DATA.format(root=tmp / "pngs"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(spec, fmt="none", workers=0, overrides={
            "solver.max_iter": "80", "solver.lr_policy": "fixed",
            "solver.test_interval": "0", "solver.test_iter": "0",
            "solver.snapshot_prefix": str(tmp / "snaps" / "tiny")})
    finally:
        torch.set_num_threads(n)
    return {"spec": spec, "weights": result["snapshot"], "files": test_files, "tmp": tmp}


def loader_predictions(spec: Path, weights: str) -> tuple[list[int], list[int]]:
    """What ``netdsl test`` ranks, image by image: its loader, its prediction blob."""
    ir = netdsl.load_training(spec).test_net
    cfg, span = data_config(ir, "test")
    net = netdsl.compile(ir, "test", "cpu", batch=cfg.batch_size)
    net.load_state_dict(load_weights(weights))
    feeds = feeds_of(net)
    loader = build_loader(cfg, "test", feeds.shape, 0, span=span, workers=0)
    pred, _ = prediction_blob(ir)
    labels, truth = [], []
    with torch.no_grad():
        for b in range(loader.epoch_size):
            x, y = loader.next_batch()
            k = min(cfg.batch_size, loader.num_samples - b * cfg.batch_size)
            scores = net(outputs=[pred], **feeds.inputs(x[:k], y[:k]))[pred]
            labels += scores.argmax(1).tolist()
            truth += y[:k].tolist()
    return labels, truth


def test_classify_gives_netdsl_tests_labels(trained: dict) -> None:
    expected, truth = loader_predictions(trained["spec"], trained["weights"])
    preds = classify(trained["spec"], trained["weights"], trained["files"], top=3)
    assert [p.image for p in preds] == [str(f) for f in trained["files"]]
    assert [p.classes[0] for p in preds] == expected
    accuracy = np.mean(np.array(expected) == np.array(truth))
    assert accuracy > 0.6  # it did learn something: the labels mean something
    assert all(p.names[0] == str(p.classes[0]) for p in preds)  # the class folders' names
    assert all(p.scores[0] >= p.scores[1] >= p.scores[2] for p in preds)
    assert all(sum(p.scores) <= 1.0 + 1e-6 for p in preds)
    out = io.StringIO()
    result = evaluate.test(trained["spec"], weights=trained["weights"], fmt="json", out=out,
                           workers=0)
    assert result["top1"] == pytest.approx(accuracy)


def test_transformer_makes_the_loaders_batches(trained: dict) -> None:
    ir = netdsl.load_training(trained["spec"]).test_net
    cfg, span = data_config(ir, "test")
    loader = build_loader(cfg, "test", (1, 8, 8), 0, span=span, workers=0)
    x, _ = loader.next_batch()
    t = Transformer.from_spec(trained["spec"])
    assert t.crops == 1 and t.raw_scale == 1.0
    assert torch.equal(t.batch(trained["files"][:16]), x)


def test_transformer_of_digits_scales_png_pixels_to_the_sources_range(tmp_path: Path) -> None:
    """The embedded digits are 0..1 floats: an image file's 0..255 pixels are scaled to
    that range (pycaffe's raw_scale), within the PNG's rounding."""
    spec = write_spec(tmp_path / "d.net", data='data { source: "digits" mean_value: [0.5] }')
    t = Transformer.from_spec(spec)
    assert t.raw_scale == pytest.approx(1 / 255)
    image, _ = DigitsSource("test").get(0)
    png = np.round(image * 255).astype(np.uint8)
    np.testing.assert_allclose(t.preprocess(png)[0].numpy(), image - 0.5, atol=0.5 / 255)


def test_ten_crops_are_the_loaders(tmp_path: Path) -> None:
    data = ('data { source: "digits" test { resize: [12] crop: 8 test_crops: 10 '
            'batch_size: 4 } }')
    spec = write_spec(tmp_path / "c.net", data=data)
    ir = netdsl.load_training(spec).test_net
    cfg, span = data_config(ir, "test")
    t = Transformer.from_config(cfg, (1, 8, 8))
    assert t.crops == 10
    loader = build_loader(cfg, "test", (1, 8, 8), 0, span=span, workers=0)
    x, _ = loader.next_batch()
    images = [DigitsSource("test").get(i)[0] * 255 for i in range(4)]
    np.testing.assert_allclose(t.batch(images).numpy(), x.numpy(), atol=1e-5)
    with pytest.raises(DataError, match="10-crop"):
        Transformer.from_config(cfg.__class__(), (1, 8, 8), crops=10)


def test_classify_cli_json_and_table(trained: dict, capsys: pytest.CaptureFixture[str]) -> None:
    folder = trained["files"][0].parent
    assert main(["classify", str(trained["spec"]), "--weights", trained["weights"],
                 str(folder), "--top", "2", "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(image_files([folder]))
    assert [len(r["top"]) for r in lines] == [2] * len(lines)
    assert set(lines[0]["top"][0]) == {"class", "score", "name"}
    files = [str(f) for f in trained["files"][:3]]
    assert main(["classify", str(trained["spec"]), "--weights", trained["weights"], *files,
                 "--top", "2"]) == 0
    table = capsys.readouterr().out
    assert "prob" in table and trained["files"][0].name in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_classify_labels_file(trained: dict, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("".join(f"digit {d}\n" for d in range(10)))
    (p,) = classify(trained["spec"], trained["weights"], trained["files"][:1], top=1,
                    labels=names)
    assert p.names == (f"digit {p.classes[0]}",)
    names.write_text("zero\none\n")
    with pytest.raises(DataError, match="name 2 classes"):
        classify(trained["spec"], trained["weights"], trained["files"][:1], labels=names)


def test_classify_errors_are_diagnostics(trained: dict, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec, w = str(trained["spec"]), trained["weights"]
    assert main(["classify", spec, "--weights", w, str(tmp_path / "nope.png")]) == 1
    assert "image not found" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["classify", spec, "--weights", w, str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert main(["classify", spec, "--weights", w, str(tmp_path / "empty")]) == 1
    assert "no images" in capsys.readouterr().err


def test_features_npy_and_safetensors(trained: dict, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec, w = str(trained["spec"]), trained["weights"]
    out = tmp_path / "f.npy"
    assert main(["features", spec, "--weights", w, "--blobs", "fc1", "-o", str(out),
                 "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    feats = np.load(out)
    assert feats.shape == (360, 16) and summary["images"] == 360
    # the same rows a forward pass of the compiled net gives for the first images
    t = Transformer.from_spec(trained["spec"])
    net = netdsl.Net(spec, w)
    ref = net.forward(data=t.batch(trained["files"][:5]), end="relu1")["fc1"]
    np.testing.assert_allclose(feats[:5], ref.numpy(), rtol=1e-5, atol=1e-6)
    both = tmp_path / "f.safetensors"
    arrays = extract_features(spec, w, ["fc1", "fc2"], both, fmt="none", batches=2)
    saved = load_weights(both)
    assert set(saved) == {"fc1", "fc2", "label"} and saved["fc2"].shape == (32, 10)
    np.testing.assert_array_equal(saved["fc1"].numpy(), arrays["fc1"])


def test_features_errors(trained: dict, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    spec, w = str(trained["spec"]), trained["weights"]
    assert main(["features", spec, "--weights", w, "--blobs", "fc9", "-o",
                 str(tmp_path / "f.npy")]) == 1
    assert "no blob 'fc9'" in capsys.readouterr().err
    assert main(["features", spec, "--weights", w, "--blobs", "fc1,fc2", "-o",
                 str(tmp_path / "f.npy")]) == 2
    assert ".npz or .safetensors" in capsys.readouterr().err
    with pytest.raises(UsageError):
        extract_features(spec, w, ["fc1"], tmp_path / "f.txt")


DEPLOY = """name: "deploy"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
        inner_product_param { num_output: 4 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_set_data_reaches_the_section_on_a_caffe_deploy_net(tmp_path: Path) -> None:
    """Caffe's input layers are called "data": ``--set data.mean_value=...`` sets the data
    section (as classify.py's --mean_file and --channel_swap), since the layer has no
    such field."""
    spec = tmp_path / "deploy.prototxt"
    spec.write_text(DEPLOY)
    t = Transformer.from_spec(spec, overrides={
        "data.source": "folder", "data.mean_value": "[104, 117, 123]", "data.bgr": "true"})
    assert t.bgr and t.raw_scale == 1.0
    assert t.pipeline.mean is not None and t.pipeline.mean.values == (104.0, 117.0, 123.0)
