"""netdsl.runtime.train and .config: Caffe's solver loop on tiny nets over the digits."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import netdsl
from netdsl.diagnostics import DataError, NetdslError, SpecError, render
from netdsl.runtime.loading import data_config
from netdsl.runtime.snapshot import read_snapshot
from netdsl.runtime.train import INTERRUPTED, Trainer, train
from netdsl.weights import load_weights, save_weights
from tests.runtime.helpers import DATA, TINY, write_spec
from tests.shared import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny spec, in a fresh current folder (snapshots go there, as in Caffe)."""
    monkeypatch.chdir(tmp_path)
    return write_spec(tmp_path / "tiny.net")


def run_json(spec: Path, **kw) -> tuple[dict, list[dict]]:
    out = io.StringIO()
    result = train(spec, fmt="json", out=out, **kw)
    return result, [json.loads(line) for line in out.getvalue().splitlines()]


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ config


def _data_config(net: netdsl.ir.Net, phase: str, data_path: str | None = None):
    return data_config(net, phase, data_path)[0]


def test_solver_config_defaults_without_solver_section(tmp_path: Path) -> None:
    p = tmp_path / "n.net"
    p.write_text(TINY.format(dropout="", data=DATA).split("solver")[0])
    cfg = netdsl.load(p).solver
    assert (cfg.base_lr, cfg.lr_policy, cfg.max_epochs, cfg.max_iter) == (0.01, "fixed", 1.0, 0)


def test_solver_config_set_max_iter_replaces_max_epochs() -> None:
    small = ROOT / "specs" / "alexnet_small.net"
    assert netdsl.load(small).solver.max_epochs > 0  # the spec counts epochs
    cfg = netdsl.load(small, "train", {"solver.max_iter": "7"}).solver
    assert (cfg.max_iter, cfg.max_epochs) == (7, 0.0)


def test_solver_typo_is_located(spec: Path) -> None:
    text = spec.read_text().replace("momentum: 0.9", "momentun: 0.9")
    spec.write_text(text)
    with pytest.raises(SpecError) as e:
        netdsl.load(spec)  # the solver section is checked when the net is built
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "momentun" in t)
    assert e.value.span.line == line
    assert "did you mean 'momentum'" in (e.value.hint or "")


def test_data_phase_blocks_override_common_fields(tmp_path: Path) -> None:
    data = ('data { source: "digits" batch_size: 16 mean_value: [0.5]\n'
            '       train { mirror: true } test { batch_size: 40 mean_value: [0.25] } }')
    p = write_spec(tmp_path / "n.net", data=data)
    tr = _data_config(netdsl.load(p, "train"), "train")
    te = _data_config(netdsl.load(p, "test"), "test")
    assert (tr.batch_size, tr.mirror, tr.mean_value) == (16, True, (0.5,))
    assert (te.batch_size, te.mirror, te.mean_value) == (40, False, (0.25,))


def test_data_typo_in_phase_block(tmp_path: Path) -> None:
    p = write_spec(tmp_path / "n.net", data='data { source: "digits" test { bach_size: 4 } }')
    with pytest.raises(SpecError) as e:
        _data_config(netdsl.load(p, "test"), "test")
    assert "unknown field 'bach_size'" in e.value.message
    assert "batch_size" in (e.value.hint or "")
    assert e.value.span.line > 0


def test_missing_data_section_says_what_to_add(spec: Path) -> None:
    write_spec(spec, data="")
    with pytest.raises(DataError) as e:
        train(spec, fmt="none")
    assert "says nothing about its train data" in e.value.message
    assert "data {" in (e.value.hint or "") and "digits" in (e.value.hint or "")


def test_missing_imagenet_names_the_path_and_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no data/ilsvrc12 here
    with pytest.raises(DataError) as e:
        train(ROOT / "specs" / "alexnet.net", fmt="none")
    text = render(e.value)
    assert "data/ilsvrc12" in text and "does not exist" in text
    assert "--data PATH" in text and "--set data.path=" in text
    assert e.value.span.path.endswith("alexnet.net") and e.value.span.line > 0
    with pytest.raises(DataError) as e:
        train(ROOT / "specs" / "alexnet.net", fmt="none", data_path=str(tmp_path / "imagenet"))
    assert "imagenet" in e.value.message and "from --data" in e.value.message


def test_folder_data_uses_phase_subfolders(tmp_path: Path) -> None:
    for sub in ("train", "val"):
        (tmp_path / "imgs" / sub / "cat").mkdir(parents=True)
    data = f'data {{ source: "folder" path: "{tmp_path / "imgs"}" }}'
    p = write_spec(tmp_path / "n.net", data=data)
    train_path = _data_config(netdsl.load(p, "train"), "train").path
    test_path = _data_config(netdsl.load(p, "test"), "test").path
    assert train_path == str(tmp_path / "imgs" / "train")
    assert test_path == str(tmp_path / "imgs" / "val")


# ------------------------------------------------------------------------------- loop


def test_json_lines_exact(spec: Path) -> None:
    result, lines = run_json(spec)
    kinds = [(d.get("phase") or d["event"], d["iter"]) for d in lines]
    assert kinds == [
        ("start", 0), ("test", 0), ("train", 0), ("train", 4), ("test", 6), ("train", 8),
        ("snapshot", 12), ("test", 12), ("done", 12),
    ]
    run = ["device", "workers", "precision", "channels_last", "compile", "cuda_graphs"]
    assert list(lines[0]) == ["event", "net", "iter", "max_iter", "batch", *run]
    assert lines[0]["precision"] == "fp32" and lines[0]["workers"] == 0  # digits: in memory
    for d in lines:
        if d.get("phase") == "train":
            assert list(d) == ["iter", "epoch", "phase", "lr", "loss", "images_per_s",
                               "data_wait"]
            assert d["images_per_s"] > 0 and 0 <= d["data_wait"] <= 1
        elif d.get("phase") == "test":
            assert list(d) == ["iter", "epoch", "phase", "lr", "loss", "accuracy"]
    assert lines[2]["epoch"] == round(16 / 1437, 6)
    assert [d["lr"] for d in lines if d.get("phase") == "train"] == [0.1, 0.1, 0.05]
    done = lines[-1]
    assert list(done) == ["event", "iter", "loss", "accuracy", "seconds", *run]
    assert done["accuracy"] == result["accuracy"] == lines[-2]["accuracy"]
    assert result["status"] == 0 and result["iter"] == 12
    assert lines[-3] == {"event": "snapshot", "iter": 12, "path": "snaps/tiny_iter_12.safetensors"}


def test_test_interval_iter_and_initialization(spec: Path) -> None:
    _, lines = run_json(spec, overrides={"solver.test_initialization": "false"})
    assert [d["iter"] for d in lines if d.get("phase") == "test"] == [6, 12]
    tr = Trainer(spec)
    tr.run()  # tests at 0, 6 and 12, each of test_iter = 2 batches of 16
    assert tr.test_loader is not None and tr.test_loader.index == 3 * 2 * 16
    tr2 = Trainer(spec, overrides={"solver.test_interval": "0", "solver.test_iter": "0"})
    tr2.run()  # no periodic tests; the final test covers the whole test set
    assert tr2.test_loader is not None and tr2.test_loader.epoch == 1


def test_average_loss_smooths_the_display(spec: Path) -> None:
    over = {"solver.display": "1"}
    _, raw = run_json(spec, overrides={**over, "solver.average_loss": "1"})
    _, smooth = run_json(spec, overrides={**over, "solver.average_loss": "3"})
    r = [d["loss"] for d in raw if d.get("phase") == "train"]
    s = [d["loss"] for d in smooth if d.get("phase") == "train"]
    for i in range(12):
        window = r[max(0, i - 2): i + 1]
        assert s[i] == pytest.approx(sum(window) / len(window), rel=1e-6)


def test_test_net_shares_the_train_weights(spec: Path) -> None:
    tr = Trainer(spec)
    for _ in range(3):
        tr.step()
    assert tr.test_net is not None
    train_sd, test_sd = tr.net.state_dict(), tr.test_net.state_dict()
    assert same_tensors(train_sd, test_sd)
    assert tr.test_net.training is False and tr.net.training is True
    assert tr._copied == []  # shared, not copied


def test_iter_size_equals_a_doubled_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    p = write_spec(tmp_path / "n.net", dropout=False)
    common = {"solver.max_iter": "3", "solver.test_interval": "0", "solver.test_iter": "0"}
    a = Trainer(p, overrides={**common, "data.batch_size": "8", "solver.iter_size": "2"})
    b = Trainer(p, overrides={**common, "data.batch_size": "16"})
    for _ in range(3):
        a.step()
        b.step()
    sa, sb = a.net.state_dict(), b.net.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-6)
    assert a.feeder.position[1] == b.feeder.position[1] == 48  # what the steps consumed
    # The displayed loss is the mean over the iter_size batches, not their sum.
    assert a.smoothed_loss() == pytest.approx(b.smoothed_loss(), rel=1e-5)


def test_snapshot_files_at_the_right_iterations(spec: Path) -> None:
    train(spec, fmt="none", overrides={"solver.snapshot": "5"})
    names = sorted(p.name for p in (spec.parent / "snaps").iterdir())
    assert names == sorted(
        f"tiny_iter_{i}{suffix}" for i in (5, 10, 12)
        for suffix in (".safetensors", ".solverstate.safetensors")
    )
    snap = read_snapshot(spec.parent / "snaps" / "tiny_iter_10.safetensors", net_name="tiny")
    assert snap.iteration == 10 and snap.state["train_loader"]["index"] == 160


def test_resume_is_bit_identical(spec: Path) -> None:
    # Plateau policy, dropout, momentum, iter_size 2: every piece of state matters.
    over = {"solver.lr_policy": "plateau", "solver.patience": "1", "solver.test_interval": "3",
            "solver.iter_size": "2", "solver.display": "1", "solver.average_loss": "4"}
    _, straight = run_json(spec, overrides={**over, "solver.snapshot_prefix": "a/x"})
    train(spec, fmt="none", overrides={**over, "solver.snapshot_prefix": "b/x",
                                       "solver.max_iter": "7"})
    _, resumed = run_json(spec, overrides={**over, "solver.snapshot_prefix": "b/x"},
                          resume="latest")
    a = read_snapshot(spec.parent / "a" / "x_iter_12.safetensors")
    b = read_snapshot(spec.parent / "b" / "x_iter_12.safetensors")
    assert same_tensors(a.weights, b.weights)
    assert same_tensors(a.solver_tensors, b.solver_tensors)
    assert a.state == b.state
    # The resumed run prints what the straight run printed from iteration 7 on.
    timing = ("images_per_s", "data_wait")  # measured, so not the same twice

    def printed(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in timing}

    tail = [printed(d) for d in straight if d.get("iter", 0) >= 7 and "phase" in d]
    assert tail == [printed(d) for d in resumed if "phase" in d]


def test_sigint_snapshots_and_returns_130(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, straight = run_json(spec, overrides={"solver.snapshot_prefix": "a/x"})
    original = Trainer.step

    def step(self: Trainer):
        if self.iteration == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would, mid-iteration
        return original(self)

    monkeypatch.setattr(Trainer, "step", step)
    result, lines = run_json(spec, overrides={"solver.snapshot_prefix": "b/x"})
    assert result["status"] == INTERRUPTED == 130
    assert result["iter"] == 6  # the iteration under way was finished
    assert lines[-1]["event"] == "interrupted" and lines[-1]["iter"] == 6
    assert (spec.parent / "b" / "x_iter_6.solverstate.safetensors").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.setattr(Trainer, "step", original)
    result, _ = run_json(spec, overrides={"solver.snapshot_prefix": "b/x"}, resume="latest")
    assert result["status"] == 0
    a = load_weights(spec.parent / "a" / "x_iter_12.safetensors")
    b = load_weights(spec.parent / "b" / "x_iter_12.safetensors")
    assert same_tensors(a, b)


def test_request_stop_without_signals(spec: Path) -> None:
    tr = Trainer(spec)
    tr.request_stop()
    result = tr.run()
    assert result["status"] == INTERRUPTED and result["iter"] == 1


# ------------------------------------------------------------------------------ errors


def _train_error(spec: Path, **kw) -> NetdslError:
    with pytest.raises(NetdslError) as e:
        train(spec, fmt="none", **kw)
    return e.value


def test_corrupt_snapshot_is_named(spec: Path) -> None:
    train(spec, fmt="none", overrides={"solver.snapshot": "6"})
    state = spec.parent / "snaps" / "tiny_iter_6.solverstate.safetensors"
    raw = bytearray(state.read_bytes())
    raw[-10] ^= 0xFF
    state.write_bytes(bytes(raw))
    e = _train_error(spec, resume=str(state))
    assert isinstance(e, DataError) and "tiny_iter_6.solverstate.safetensors" in render(e)
    weights = spec.parent / "snaps" / "tiny_iter_12.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    e = _train_error(spec, resume="latest")
    assert "tiny_iter_12.safetensors" in render(e) and "checksum" in e.message


def test_snapshot_of_another_shape_is_refused(spec: Path) -> None:
    train(spec, fmt="none", overrides={"solver.max_iter": "2"})
    e = _train_error(spec, resume="latest", overrides={"hidden": "8"})
    assert isinstance(e, DataError)
    text = render(e)
    assert "fc1.weight" in text and "(16, 64)" in text and "(8, 64)" in text
    assert "tiny_iter_2.safetensors" in text


def test_resume_latest_without_snapshots(spec: Path) -> None:
    e = _train_error(spec, resume="latest")
    assert "no snapshot to resume from" in e.message and "snaps/tiny" in e.message


def test_weights_that_do_not_fit(spec: Path) -> None:
    path = spec.parent / "w.safetensors"
    save_weights(path, {"fc1.weight": torch.zeros(8, 64), "fc1.bias": torch.zeros(8)})
    e = _train_error(spec, weights=str(path))
    assert isinstance(e, DataError)
    text = render(e)
    assert "fc1.weight" in text and "(8, 64)" in text and "(16, 64)" in text
    assert "w.safetensors" in text


def test_fine_tune_loads_matching_layers(spec: Path) -> None:
    w1 = torch.full((16, 64), 0.01)
    path = spec.parent / "w.safetensors"
    save_weights(path, {"fc1.weight": w1, "fc1.bias": torch.zeros(16), "other.weight": w1})
    tr = Trainer(spec)
    assert sorted(tr.load_weights(path)) == ["fc1.bias", "fc1.weight"]
    assert torch.equal(tr.net.state_dict()["fc1.weight"].cpu(), w1)
    assert torch.equal(tr.test_net.state_dict()["fc1.weight"].cpu(), w1)  # shared


def test_resume_and_weights_together_is_a_usage_error(spec: Path) -> None:
    e = _train_error(spec, resume="latest", weights="w.safetensors")
    assert "not both" in e.message


def test_tensorboard_missing_is_a_message(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    e = _train_error(spec, tensorboard_dir="tb")
    assert "pip install tensorboard" in (e.hint or "")


def test_tensorboard_gets_the_same_scalars(spec: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, lines = run_json(spec, tensorboard_dir=str(tmp_path / "tb"))
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    tests = [r for r in lines if r.get("phase") == "test"]
    assert tests and tags
    for record in tests:
        for key in ("loss", "accuracy"):
            tag = next(t for t in tags if t.startswith("test") and t.endswith(key))
            values = {e.step: e.value for e in acc.Scalars(tag)}
            assert values[record["iter"]] == pytest.approx(record[key], rel=1e-6)


def test_plateau_metric_must_be_a_test_output(spec: Path) -> None:
    e = _train_error(spec, overrides={"solver.lr_policy": "plateau",
                                      "solver.plateau_metric": "acuracy"})
    assert "'acuracy'" in e.message and "did you mean 'accuracy'" in (e.hint or "")


# ------------------------------------------------------------------ Caffe's data layers

PROTOTXT = """
name: "lmdbnet"
layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TRAIN }
        transform_param { scale: 0.0625 } data_param { source: "x/train_lmdb" batch_size: 8
        backend: LMDB } }
layer { name: "d" type: "Data" top: "data" top: "label" include { phase: TEST }
        transform_param { scale: 0.0625 } data_param { source: "x/test_lmdb" batch_size: 10
        backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc"
        include { phase: TEST } }
"""


def test_caffe_data_layers_train_from_lmdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lmdb = pytest.importorskip("lmdb", reason="the lmdb package is not installed")
    from netdsl.caffe_pb import Datum

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "db").mkdir()
    for name, n in (("train_lmdb", 40), ("test_lmdb", 20)):
        env = lmdb.open(str(tmp_path / "db" / name), map_size=1 << 22)
        with env.begin(write=True) as txn:
            for k in range(n):
                pix = rng.integers(0, 16, (1, 6, 6), dtype=np.uint8)
                d = Datum(channels=1, height=6, width=6, data=pix.tobytes(), label=k % 10)
                txn.put(f"{k:08d}".encode(), d.SerializeToString())
        env.close()
    p = tmp_path / "train_val.prototxt"
    p.write_text(PROTOTXT)
    cfg = _data_config(netdsl.load(p, "test"), "test", str(tmp_path / "db"))
    assert (cfg.source, cfg.batch_size, cfg.scale, cfg.shuffle) == ("lmdb", 10, 0.0625, False)
    assert cfg.path == str(tmp_path / "db" / "test_lmdb")
    e = _train_error(p)
    assert "x/train_lmdb" in e.message and "--data PATH" in (e.hint or "")
    result = train(p, fmt="none", data_path=str(tmp_path / "db"),
                   overrides={"solver.max_iter": "3", "solver.snapshot_prefix": "s/l"})
    assert result["iter"] == 3 and 0.0 <= result["acc"] <= 1.0
    assert netdsl.load_training(p).train_net.layers[0].type == "Data"


def test_caffe_solver_file_names_the_net(spec: Path) -> None:
    solver = spec.parent / "tiny_solver.prototxt"
    solver.write_text('net: "tiny.net"\nbase_lr: 0.05\nlr_policy: "fixed"\nmax_iter: 3\n'
                      'test_interval: 3\ntest_iter: 1\nsnapshot_prefix: "s/solver"\n')
    setup = netdsl.load_training(solver, {"solver.max_iter": "2", "hidden": "8"})
    tr, te = setup.train_net, setup.test_net
    assert setup.solver.max_iter == 2
    assert tr.solver.max_iter == 2 and tr.solver.base_lr == 0.05
    assert tr.layer("fc1").params.num_output == 8 and te.layer("accuracy").type == "Accuracy"
    result = train(solver, fmt="none")
    assert result["iter"] == 3 and (spec.parent / "s" / "solver_iter_3.safetensors").is_file()
    solver.write_text('net: "elsewhere/none.prototxt"\nbase_lr: 0.05\n')
    e = _train_error(solver)
    assert "none.prototxt" in e.message and e.span.line == 1


def test_data_flag_gives_the_path_and_detects_its_kind(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--data counts as the path for every source kind, and says what it points at."""
    from netdsl.runtime.loading import detect_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs" / "train" / "a").mkdir(parents=True)
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "data.mdb").write_bytes(b"")
    (tmp_path / "list.txt").write_text("x.png 0\n")
    assert detect_source(str(tmp_path / "imgs"), "digits") == "folder"
    assert detect_source(str(tmp_path / "db"), "folder") == "lmdb"
    assert detect_source(str(tmp_path / "list.txt"), "lmdb") == "list"
    assert detect_source(str(tmp_path / "nowhere"), "lmdb") == "lmdb"
    p = write_spec(tmp_path / "n.net", data='data { source: "folder" batch_size: 4 }')
    with pytest.raises(DataError, match="needs path") as e:
        _data_config(netdsl.load(p, "train"), "train")
    assert "--data PATH" in (e.value.hint or "")
    cfg = _data_config(netdsl.load(p, "train"), "train", str(tmp_path / "imgs"))
    assert (cfg.source, cfg.path) == ("folder", str(tmp_path / "imgs" / "train"))
    cfg = _data_config(netdsl.load(p, "train"), "train", str(tmp_path / "db"))
    assert (cfg.source, cfg.path) == ("lmdb", str(tmp_path / "db"))


def test_sigterm_during_setup_exits_130_as_ctrl_c(
        spec: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM that arrives while the net is being built (before the loop's own
    handlers) stops the command as Ctrl-C does, with no traceback and no snapshot."""
    from netdsl.cli import main
    from netdsl.runtime import train as train_module

    build = train_module.Trainer.__init__

    def terminated_while_building(self: Trainer, *args: object, **kw: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        build(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module.Trainer, "__init__", terminated_while_building)
    assert main(["train", str(spec), "--devices", "cpu"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (spec.parent / "snaps").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_a_run_logs_its_placement_once(spec: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The TEST net goes where the TRAIN net went: one "placing" line, not one per net."""
    import logging

    with caplog.at_level(logging.INFO, logger="netdsl"):
        trainer = Trainer(spec)
    assert trainer.test_net is not None
    assert sum("placing" in r.getMessage() for r in caplog.records) == 1
    assert trainer.test_net.devices == trainer.net.devices
