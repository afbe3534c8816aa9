"""What people read: ``shapes`` on an 80-column terminal, its batch and activation totals,
the devices column, ``expand``'s numbers, the data line, and line-based progress in logs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from netdsl import load
from netdsl.cli import main
from netdsl.placement import plan
from netdsl.printer import tidy_number
from netdsl.report import shapes_table, total_activations
from netdsl.runtime.progress import RichReporter
from netdsl.shapes import infer_shapes
from tests.shared import ROOT

SPECS = ROOT / "specs"


def render(spec: str, width: int, batch: int | None = None) -> str:
    net = load(SPECS / spec)
    buf = io.StringIO()
    console = Console(file=buf, width=width, highlight=False, color_system=None)
    shapes_table(infer_shapes(net, batch), None, "test", console=console)
    return buf.getvalue()


@pytest.mark.parametrize("spec", ["googlenet.net", "resnet50.net", "alexnet.net"])
def test_shapes_fits_80_columns(spec: str) -> None:
    text = render(spec, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    # names are wrapped at / and _, never cut (first_column joins them again)
    assert first_column(text) == [lay.name for lay in load(SPECS / spec).layers]


def first_column(text: str) -> list[str]:
    """The layer names of a compact table, their wrapped pieces joined again."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "type"])
    cut = lines[head].index("type")
    names: list[str] = []
    wiring = False
    for line in lines[head + 2:]:
        if line.lstrip().startswith("total") or not line.strip():
            break
        left, rest = line[:cut].strip(), line[cut:].strip()
        if rest:
            names.append(left)
            wiring = False
        elif left.startswith(("←", "→")) or wiring:
            wiring = True
        else:
            names[-1] += left
    return names


def test_wrapped_names_break_at_separators() -> None:
    from netdsl.report import _wrap

    assert _wrap("inception_3a/relu_5x5_reduce", 24) == ["inception_3a/relu_5x5_", "reduce"]
    assert _wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]  # no separator: cut
    assert _wrap("← a/{1x1, 3x3, 5x5}", 12, "  ") == ["← a/{1x1,", "  3x3, 5x5}"]
    text = render("googlenet.net", 80)
    assert "← inception_3a/{1x1," in text  # a concat's four inputs, compactly


def test_wide_console_keeps_the_wiring_column() -> None:
    text = render("alexnet.net", 200)
    assert "bottoms → tops" in text and "data → conv1" in text


def test_in_place_layers_count_once() -> None:
    relus = "".join(f'layer {{ name: "r{i}" type: ReLU bottom: "c" top: "c" }}\n'
                    for i in range(200))
    text = ('input { name: "data" shape: [3, 4, 4] }\n'
            'layer { name: "c" type: Convolution num_output: 2 kernel_size: 1 }\n' + relus)
    path = ROOT / "tests" / "fixtures"  # resolve relative paths nowhere: write in tmp
    del path
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "relus.net"
        p.write_text(text)
        table = infer_shapes(load(p), 2)
    assert total_activations(table) == (2 * 3 * 16 + 2 * 2 * 16) * 4
    assert table.total_activation_bytes > total_activations(table)  # the old sum


def test_shapes_json_counts_in_place_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", str(SPECS / "alexnet.net"), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    relu1 = next(x for x in out["layers"] if x["name"] == "relu1")
    assert relu1["in_place"] and relu1["activation_bytes"] == 0
    assert out["total_activation_bytes"] == sum(x["activation_bytes"] for x in out["layers"])


@pytest.mark.parametrize(("argv", "batch", "source"), [
    (["alexnet.net"], 128, "data section"),
    (["alexnet.net", "--batch", "3"], 3, "--batch"),
    (["googlenet.net"], 10, "Input 'data'"),
])
def test_batch_defaults_to_the_specs(capsys: pytest.CaptureFixture[str], argv: list[str],
                                     batch: int, source: str) -> None:
    assert main(["shapes", str(SPECS / argv[0]), *argv[1:], "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["batch"], out["batch_from"]) == (batch, source)
    assert main(["shapes", str(SPECS / argv[0]), *argv[1:]]) == 0
    assert f"batch {batch} ({source})" in capsys.readouterr().out


def test_batch_default_when_the_spec_gives_none(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "x.net"
    p.write_text('input { name: "data" shape: [3] }\n')
    assert main(["shapes", str(p), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch"] == 1 and "default" in out["batch_from"]


def test_devices_column_agrees_with_placement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", str(SPECS / "alexnet.net"), "--format", "json",
                 "--placement"]) == 0
    out = json.loads(capsys.readouterr().out)
    shards = {lp["name"]: lp["shards"] for lp in out["placement"]["layers"]}
    for lay in out["layers"]:
        used = {d for sh in shards[lay["name"]] for d in sh["logical"]}
        assert set(lay["devices"]) == used, lay["name"]
    # without --placement, the same column
    assert main(["shapes", str(SPECS / "alexnet.net"), "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [x["devices"] for x in again["layers"]] == [x["devices"] for x in out["layers"]]


def test_table_devices_come_from_the_plan() -> None:
    net = load(SPECS / "alexnet.net")
    table = infer_shapes(net)
    p = plan(net, table)
    loss = p.layer("loss")
    assert [d for sh in loss.shards for d in sh.logical] == ["gpu:0"]
    text = render("alexnet.net", 80)
    assert any(line.split()[:3] == ["loss", "SoftmaxWithLoss", "gpu:0"] or
               line.split()[:3] == ["loss", "SoftmaxWith…", "gpu:0"] for line in
               text.splitlines())


def test_data_line_says_the_pixel_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", str(SPECS / "alexnet_small.net")]) == 0
    out = capsys.readouterr().out
    assert "data (train): digits" in out and "pixels 0..1" in out
    assert main(["shapes", str(SPECS / "alexnet.net"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["pixel_range"] == "0..255"


def test_tidy_numbers() -> None:
    assert tidy_number(24.0) == 24 and isinstance(tidy_number(24.0), int)
    assert tidy_number(0.1 * 288) == 28.8
    assert tidy_number(28.799999999999997) == 28.8
    assert tidy_number(1e-5) == 1e-5
    assert tidy_number(0.1 + 0.2) == 0.3


def test_expand_prints_numbers_as_written(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "x.net"
    p.write_text('let w = 0.1\ninput { name: "data" shape: [3, 8, 8] }\n'
                 'layer { name: "c" type: Convolution num_output: 240 * $w kernel_size: 3 }\n'
                 'layer { name: "d" type: Dropout dropout_ratio: 288 * $w / 100 }\n'
                 'solver { base_lr: 0.1 * 3 }\n')
    assert main(["expand", str(p)]) == 0
    out = capsys.readouterr().out
    assert "num_output: 24\n" in out and "dropout_ratio: 0.288\n" in out
    assert "base_lr: 0.3 }" in out


# ----------------------------------------------------------------- progress in logs


def test_progress_is_line_based_when_not_a_terminal() -> None:
    buf = io.StringIO()
    r = RichReporter(buf)
    assert not r.live
    r.begin(net="AlexNet", start_iter=0, max_iter=100, batch=64, run={"device": "cpu"})
    for i in range(1, 101):
        r.advance(i, 1000.0)
    r.train({"iter": 100, "epoch": 1.0, "phase": "train", "lr": 0.01, "loss": 0.5})
    path = "snapshots/" + "a_very_long_name" * 8 + "_iter_100.safetensors"
    r.event({"event": "interrupted", "iter": 100, "path": path})
    r.close()
    text = buf.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert sum(line.startswith("[") and "%] iteration" in line for line in lines) == 10
    assert any(line.endswith(f"--resume {path}") for line in lines)  # one line, unwrapped
    assert lines[0].startswith("Training AlexNet from iteration 0 to 100")


def test_progress_lines_resume_from_the_start_iteration() -> None:
    buf = io.StringIO()
    r = RichReporter(buf, live=False)
    r.begin(net="n", start_iter=50, max_iter=100, batch=1)
    r.advance(55, None)
    r.advance(100, None)
    lines = [x for x in buf.getvalue().splitlines() if "%] iteration" in x]
    assert lines[0].startswith("[ 10%] iteration 55 of 100")
    assert lines[-1].startswith("[100%] iteration 100 of 100")


def test_counted_jobs_print_lines_in_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """``test``, ``time`` and ``features`` in a log: a line at every tenth once the job
    has run a while (never a bar, never a wrapped line); nothing in JSON."""
    from netdsl.runtime.progress import Bar

    monkeypatch.setattr(Bar, "QUIET_S", 0.0)
    log = io.StringIO()
    bar = Bar(log, "rich", "time", 20)
    for _ in range(20):
        bar.advance()
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("[ 10%] time 2 of 20, ")
    assert lines[-1].startswith("[100%] time 20 of 20, ") and max(map(len, lines)) <= 80
    quiet = io.StringIO()
    bar = Bar(quiet, "json", "time", 20)
    for _ in range(20):
        bar.advance()
    assert quiet.getvalue() == ""
