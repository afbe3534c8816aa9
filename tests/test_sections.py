"""The solver and data sections are typed at the build stage: a bad field is a
``file:line:col`` diagnostic before any torch import, from ``shapes`` as from ``train``;
and the front door (``netdsl.load_training``) loads specs and Caffe solver files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import SpecError
from netdsl.sections import LR_POLICIES, SOURCE_KINDS, DataConfig, SolverConfig

ROOT = Path(__file__).resolve().parent.parent

NET = """
name: "tiny"
input { name: "data" shape: [1, 8, 8] }
input { name: "label" shape: [] }
layer { name: "fc" type: InnerProduct bottom: "data" num_output: 10 }
layer { name: "loss" type: SoftmaxWithLoss bottom: ["fc", "label"] }
"""


def _write(tmp_path: Path, text: str, name: str = "n.net") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_net_carries_typed_sections(tmp_path: Path) -> None:
    p = _write(tmp_path, NET + 'solver { base_lr: 0.1 lr_policy: "step" gamma: 0.5 '
               'stepsize: 10 max_iter: 20 }\ndata { source: "digits" batch_size: 8 '
               "test { batch_size: 4 } }\n")
    train, test = netdsl.load(p, "train"), netdsl.load(p, "test")
    assert isinstance(train.solver, SolverConfig) and train.solver.base_lr == 0.1
    assert train.solver_spans["gamma"].line == 7
    assert isinstance(train.data.config, DataConfig)
    assert (train.data.config.batch_size, test.data.config.batch_size) == (8, 4)
    assert train.data.origin == "section" and train.data.span.line == 8


@pytest.mark.parametrize("bad, line, col, match", [
    ('solver { base_lr: 0.1 momentun: 0.9 }', 7, 23, "momentun"),
    ('solver { lr_policy: "step" gamma: -0.1 stepsize: 5 }', 7, 28, "gamma"),
    ('data { source: "digts" }', 7, 8, "digts"),
    ('data { batch_size: 8 train { crop: -1 } }', 7, 30, "crop"),
])
def test_bad_section_fields_fail_shapes_and_train_alike(tmp_path: Path, bad: str, line: int,
                                                        col: int, match: str,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    p = _write(tmp_path, NET + bad + "\n")
    with pytest.raises(SpecError, match=match) as e:
        netdsl.load(p)
    assert e.value.span.line == line
    if col > 1:
        assert e.value.span.col == col
    for command in (["shapes", str(p)], ["train", str(p), "--format", "json"]):
        capsys.readouterr()
        assert main(command) == 1
        err = capsys.readouterr().err
        assert f"{p}:{line}:" in err and "Traceback" not in err


def test_sections_are_checked_without_torch(tmp_path: Path) -> None:
    p = _write(tmp_path, NET + 'solver { base_lr: -1 }\n')
    code = ("import sys, netdsl\n"
            "try:\n"
            f"    netdsl.load({str(p)!r})\n"
            "except netdsl.diagnostics.SpecError as e:\n"
            "    assert 'base_lr' in e.message\n"
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_runtime_tables_cover_the_section_names() -> None:
    from netdsl.runtime.data import SOURCES
    from netdsl.runtime.lr_policy import POLICIES

    assert tuple(SOURCES) == tuple(SOURCE_KINDS)
    assert tuple(POLICIES) == LR_POLICIES


def test_load_training_from_a_spec(tmp_path: Path) -> None:
    p = _write(tmp_path, NET + 'layer { name: "acc" type: Accuracy bottom: ["fc", "label"] '
               "phase: TEST }\nsolver { max_iter: 5 }\n")
    t = netdsl.load_training(p, {"solver.base_lr": "0.5"})
    assert t.train_net.phase.value == "train" and t.test_net.phase.value == "test"
    assert "acc" in t.test_net.outputs and "acc" not in t.train_net.outputs
    assert (t.solver.max_iter, t.solver.base_lr) == (5, 0.5)
    assert t.name == "tiny"


def test_load_training_from_a_caffe_solver_with_train_and_test_nets(tmp_path: Path) -> None:
    _write(tmp_path, NET, "train.net")
    _write(tmp_path, NET.replace('"tiny"', '"tiny-test"')
           + 'layer { name: "acc" type: Accuracy bottom: ["fc", "label"] }\n', "test.net")
    solver = _write(tmp_path, 'train_net: "train.net"\ntest_net: "test.net"\n'
                    "base_lr: 0.02\nmax_iter: 7\n", "solver.prototxt")
    t = netdsl.load_training(solver, {"solver.max_iter": "9"})
    assert t.train_net.name == "tiny" and t.test_net.name == "tiny-test"
    assert "acc" in t.test_net.outputs
    assert (t.solver.base_lr, t.solver.max_iter) == (0.02, 9)
    assert t.train_net.solver == t.solver and t.test_net.solver == t.solver
