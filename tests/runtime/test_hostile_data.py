"""Careless data and paths during training: labels past the net's outputs, unreadable
images, snapshot and TensorBoard folders that cannot be written, optional packages that
are not installed. Each is a message naming the file, before the work where it can be."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netdsl.cli import main
from netdsl.diagnostics import DataError
from netdsl.runtime.data import LabelRange, Loader, make_source
from netdsl.runtime.train import train
from tests.runtime.helpers import write_spec

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(root: Path, labels: list[int], bad: tuple[int, ...] = ()) -> Path:
    """8x8 grey PNGs and a Caffe list file of them; the ``bad`` ones are not images."""
    g = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    lines = []
    for i, label in enumerate(labels):
        path = root / "imgs" / f"{i}.png"
        if i in bad:
            path.write_bytes(b"this is not a PNG")
        else:
            Image.fromarray(g.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
        lines.append(f"imgs/{i}.png {label}\n")
    (root / "list.txt").write_text("".join(lines))
    return root / "list.txt"


def _spec(root: Path, source: str = 'source: "list"  path: "list.txt"') -> Path:
    return write_spec(root / "net.net", dropout=False,
                      data=f"data {{ {source}  batch_size: 4  shuffle: false }}")


def _train(spec: Path, **kw: object) -> tuple[dict, list[dict]]:
    out = io.StringIO()
    result = train(spec, fmt="json", out=out, devices="cpu", workers=0, **kw)  # type: ignore[arg-type]
    return result, [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_label_past_the_outputs_is_refused_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path, [0, 1, 2, 3, 4, 5, 12, 7])
    with pytest.raises(DataError) as e:
        _train(_spec(tmp_path))
    assert e.value.message == ("label 12 of imgs/6.png (list.txt:7) is outside the net's 10 "
                               "outputs (labels 0 to 9)")
    assert e.value.span.path == "list.txt"
    assert not (tmp_path / "snaps").exists()  # nothing trained


def test_more_class_folders_than_outputs(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for c in range(11):
        (tmp_path / "classes" / f"k{c:02d}").mkdir(parents=True)
        Image.new("L", (8, 8), c).save(tmp_path / "classes" / f"k{c:02d}" / "a.png")
    with pytest.raises(DataError, match=r"the data has 11 classes \(k00 to k10\), but the net "
                                        "has 10 outputs"):
        _train(_spec(tmp_path, 'source: "folder"  path: "classes"'))


def test_labels_a_source_does_not_know_up_front_are_checked_as_read() -> None:
    class Unlisted:  # an LMDB-like source: labels only come with the samples
        label_names = None

        def __len__(self) -> int:
            return 6

        def get(self, i: int) -> tuple[np.ndarray, int]:
            return np.zeros((1, 4, 4), np.uint8), 3 if i < 5 else 40

        def describe(self, i: int) -> str:
            return f"record {i}"

    loader = Loader(Unlisted(), batch_size=3, labels=LabelRange(10, ignore=None))
    loader.next_batch()
    with pytest.raises(DataError, match="label 40 of record 5 is outside the net's 10"):
        loader.next_batch()
    assert not LabelRange(10, ignore=255).bad(255)  # a loss's ignore_label is taken


def test_unreadable_images_are_skipped_and_reported(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path, list(range(8)), bad=(2, 3))
    spec = _spec(tmp_path)
    result, records = _train(spec, overrides={"solver.max_iter": "4"})
    assert result["status"] == 0 and records[-1]["skipped_images"] == 2
    with pytest.raises(DataError, match=r"cannot read image imgs/2.png: not an image file"):
        _train(spec, overrides={"solver.max_iter": "4"}, on_bad_image="fail")


def test_skipping_takes_the_next_readable_sample(tmp_path: Path) -> None:
    _images(tmp_path, list(range(6)), bad=(1,))
    source = make_source("list", path=tmp_path / "list.txt", root=tmp_path, channels=1)
    skip = Loader(source, batch_size=6, on_bad_image="skip")
    x, y = skip.next_batch()
    assert y.tolist() == [0, 2, 2, 3, 4, 5]
    assert len(skip.skipped) == 1 and "1.png" in next(iter(skip.skipped))
    with pytest.raises(DataError, match="cannot read image"):
        Loader(source, batch_size=6).next_batch()


def test_a_snapshot_folder_that_is_a_file_is_refused_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.net")
    (tmp_path / "snaps").write_text("a file where the snapshots would go")
    assert main(["train", str(spec), "--devices", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "cannot write snapshots in snaps: it is a file, not a folder" in err
    assert "Iteration" not in err
    (tmp_path / "tb").write_text("x")
    (tmp_path / "snaps").unlink()
    assert main(["train", str(spec), "--devices", "cpu", "--tensorboard", "tb"]) == 1
    assert "cannot write TensorBoard events in tb" in capsys.readouterr().err


@pytest.mark.parametrize(("module", "argv", "message"), [
    ("graphviz", ["draw", "{spec}", "-o", "{tmp}/n.svg"], "pip install graphviz"),
    ("onnx", ["export", "{spec}", "-o", "{tmp}/n.onnx"], "pip install onnx"),
    ("torch.utils.tensorboard", ["train", "{spec}", "--devices", "cpu", "--tensorboard",
                                 "{tmp}/tb"], "pip install tensorboard"),
    ("lmdb", ["data", "convert", "{tmp}", "-o", "{tmp}/db"], "pip install lmdb"),
])
def test_a_missing_optional_package_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        module: str, argv: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path / "tiny.net")
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as if not installed
    args = [a.format(spec=spec, tmp=tmp_path) for a in argv]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
