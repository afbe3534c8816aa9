"""Caffe's NetState: ``include``/``exclude`` rules on phase, level and stage, as
``Net::FilterNet`` and ``Net::StateMeetsRule`` apply them (BVLC caffe src/caffe/net.cpp;
NetState and NetStateRule in src/caffe/proto/caffe.proto), from the spec's ``state {}``,
``--stage``/``--level`` and a solver's ``train_state``/``test_state``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import netdsl
from netdsl.build import NetState, _meets, _Rule, build, in_phase
from netdsl.cli import main
from netdsl.diagnostics import NetdslError
from netdsl.ir import Phase
from tests.resolve.helpers import R

TRAIN, TEST = Phase.TRAIN, Phase.TEST


# ----------------------------------------------------------------- StateMeetsRule


@pytest.mark.parametrize(("rule", "phase", "level", "stages", "meets"), [
    (_Rule(), TRAIN, 0, (), True),                                  # an empty rule: always
    (_Rule(phase="TEST"), TRAIN, 0, (), False),                     # phase must match
    (_Rule(phase="TEST"), TEST, 0, (), True),
    (_Rule(min_level=1), TRAIN, 0, (), False),                      # level < min_level
    (_Rule(min_level=1), TRAIN, 1, (), True),                       # min_level inclusive
    (_Rule(max_level=1), TRAIN, 2, (), False),                      # level > max_level
    (_Rule(max_level=1), TRAIN, 1, (), True),                       # max_level inclusive
    (_Rule(min_level=-1, max_level=1), TRAIN, -1, (), True),        # negative levels
    (_Rule(stage=("a",)), TRAIN, 0, (), False),                     # stage must be in state
    (_Rule(stage=("a",)), TRAIN, 0, ("a",), True),
    (_Rule(stage=("a", "b")), TRAIN, 0, ("a",), False),             # all of them
    (_Rule(stage=("a", "b")), TRAIN, 0, ("b", "a", "c"), True),
    (_Rule(not_stage=("a",)), TRAIN, 0, (), True),                  # none of not_stage
    (_Rule(not_stage=("a",)), TRAIN, 0, ("a",), False),
    (_Rule(not_stage=("a", "b")), TRAIN, 0, ("b",), False),
    (_Rule(phase="TRAIN", min_level=1, stage=("x",), not_stage=("y",)), TRAIN, 1, ("x",), True),
    (_Rule(phase="TRAIN", min_level=1, stage=("x",), not_stage=("y",)), TRAIN, 1,
     ("x", "y"), False),
])
def test_state_meets_rule(rule: _Rule, phase: Phase, level: int, stages: tuple[str, ...],
                          meets: bool) -> None:
    assert _meets(rule, phase, level, stages) is meets


# ----------------------------------------------------------------- FilterNet

NET = """
input { name: "data" shape: [2] }
layer { name: "always" type: ReLU bottom: "data" }
layer { name: "deploy" type: ReLU bottom: "data" include { stage: "deploy" } }
layer { name: "not_deploy" type: ReLU bottom: "data" exclude { stage: "deploy" } }
layer { name: "lvl1" type: ReLU bottom: "data" include { min_level: 1 } }
layer { name: "upto1" type: ReLU bottom: "data" include { max_level: 1 } }
layer { name: "either" type: ReLU bottom: "data"
        include { stage: "a" } include { stage: "b" } }
layer { name: "both" type: ReLU bottom: "data" include { stage: "a" stage: "b" } }
layer { name: "test_a" type: ReLU bottom: "data" include { phase: TEST stage: "a" } }
layer { name: "ex_lvl" type: ReLU bottom: "data" exclude { min_level: 2 } }
"""


def kept(level: int | None = None, stages: list[str] | None = None, phase: str = "train",
         text: str = NET) -> list[str]:
    net = build(R(text), phase, level, stages)
    return [lay.name for lay in net.layers if lay.name != "data"]


def test_default_state_is_level_0_no_stage() -> None:
    # Caffe: a layer with include { stage } is dropped unless the state has that stage
    assert kept() == ["always", "not_deploy", "upto1", "ex_lvl"]


def test_stage_rules() -> None:
    assert kept(stages=["deploy"]) == ["always", "deploy", "upto1", "ex_lvl"]
    assert kept(stages=["a"]) == ["always", "not_deploy", "upto1", "either", "ex_lvl"]
    assert kept(stages=["b", "a"]) == ["always", "not_deploy", "upto1", "either", "both",
                                       "ex_lvl"]
    assert "test_a" in kept(stages=["a"], phase="test")
    assert "test_a" not in kept(stages=["b"], phase="test")


def test_level_rules() -> None:
    assert kept(level=1) == ["always", "not_deploy", "lvl1", "upto1", "ex_lvl"]
    assert kept(level=2) == ["always", "not_deploy", "lvl1"]
    assert kept(level=-3) == ["always", "not_deploy", "upto1", "ex_lvl"]


def test_state_block_in_the_spec() -> None:
    text = 'state { stage: "deploy" level: 1 }\n' + NET
    assert kept(text=text) == ["always", "deploy", "lvl1", "upto1", "ex_lvl"]
    net = build(R(text), "train")
    assert (net.level, net.stages) == (1, ("deploy",))
    # explicit arguments win over the spec's state
    assert kept(level=0, stages=[], text=text) == kept()


def test_state_phase_stays_the_default_phase_only() -> None:
    text = 'state { phase: TEST stage: "a" }\n' + NET
    assert "test_a" in kept(text=text, phase="test")
    assert "test_a" not in kept(text=text, phase="train")


def test_in_phase_takes_a_net_state() -> None:
    body = R('layer { name: "x" type: ReLU include { stage: "a" min_level: 1 } }').items[0]
    from netdsl import syntax as s

    assert isinstance(body.value, s.Block)
    assert not in_phase(body.value, TRAIN)
    assert not in_phase(body.value, TRAIN, NetState(0, ("a",)))
    assert in_phase(body.value, TRAIN, NetState(1, ("a",)))


def test_include_and_exclude_together_is_an_error() -> None:
    text = ('input { name: "data" shape: [2] }\nlayer { name: "x" type: ReLU bottom: "data" '
            'include { stage: "a" } exclude { stage: "b" } }\n')
    with pytest.raises(NetdslError, match="include or exclude"):
        build(R(text), "train")


def test_bad_state_field_is_a_diagnostic() -> None:
    with pytest.raises(NetdslError, match="level"):
        build(R('state { level: "high" }\ninput { name: "data" shape: [2] }\n'), "train")


def test_unknown_rule_field_is_a_diagnostic() -> None:
    text = ('input { name: "data" shape: [2] }\nlayer { name: "x" type: ReLU bottom: "data" '
            'include { stages: "a" } }\n')
    with pytest.raises(NetdslError, match="stages"):
        build(R(text), "train")


# ----------------------------------------------------------------- API and command line


def write(tmp_path: Path, text: str = NET, name: str = "n.net") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_load_takes_stages_and_level(tmp_path: Path) -> None:
    path = write(tmp_path)
    names = [x.name for x in netdsl.load(path, "train", stages=["deploy"], level=1).layers]
    assert "deploy" in names and "lvl1" in names and "not_deploy" not in names
    spec = netdsl.load_spec(path, stages=["a", "b"])
    assert "both" in [x.name for x in build(spec, "train").layers]


def layer_names(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(["shapes", *argv, "--format", "json"]) == 0
    return [x["name"] for x in json.loads(capsys.readouterr().out)["layers"]]


def test_cli_stage_and_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    assert "deploy" not in layer_names(capsys, path)
    assert "deploy" in layer_names(capsys, path, "--stage", "deploy")
    assert "both" in layer_names(capsys, path, "--stage", "a", "--stage", "b")
    assert "lvl1" in layer_names(capsys, path, "--level", "1")
    # --stage replaces the spec's state { stage }
    path2 = write(tmp_path, 'state { stage: "deploy" }\n' + NET, "s.net")
    assert "deploy" in layer_names(capsys, path2)
    assert "deploy" not in layer_names(capsys, path2, "--stage", "a")


def test_cli_level_must_be_an_integer(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", write(tmp_path), "--level", "x"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_every_spec_command_takes_stage_and_level() -> None:
    from netdsl.cli import make_parser

    parser = make_parser()
    for cmd in (["shapes"], ["expand"], ["lower"], ["train"], ["time"], ["test"],
                ["draw", "-o", "x.dot"], ["export", "-o", "x.onnx"]):
        ns = parser.parse_args([*cmd, "n.net", "--stage", "deploy", "--level", "2"])
        assert ("state.stage", '["deploy"]') in ns.overrides, cmd
        assert ("state.level", "2") in ns.overrides, cmd


# ----------------------------------------------------------------- solver files

LENET = """
name: "tiny"
layer { name: "data" type: Input top: "data" input_param { shape { dim: 4 dim: 1 dim: 8 dim: 8 } } }
layer { name: "ip" type: InnerProduct bottom: "data" top: "ip"
        inner_product_param { num_output: 3 } }
layer { name: "deployed" type: ReLU bottom: "ip" top: "ip" include { stage: "deploy" } }
layer { name: "deep" type: ReLU bottom: "ip" top: "ip" include { min_level: 2 } }
"""


def test_shapes_on_a_solver_file_shows_its_net(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tiny.prototxt").write_text(LENET)
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "somewhere/tiny.prototxt"\nbase_lr: 0.01\nmax_iter: 10\n'
                      'train_state { stage: "deploy" level: 2 }\n')
    names = layer_names(capsys, str(solver))
    assert names == ["data", "ip", "deployed", "deep"]  # train_state merged in
    assert layer_names(capsys, str(solver), "--phase", "test") == ["data", "ip"]
    assert main(["shapes", str(solver)]) == 0
    out = capsys.readouterr()
    assert "InnerProduct" in out.out and "tiny.prototxt" in out.err


def test_shapes_on_a_solver_file_without_its_net(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "examples/missing.prototxt"\nbase_lr: 0.01\n')
    assert main(["shapes", str(solver)]) == 1
    err = capsys.readouterr().err
    assert "missing.prototxt" in err and "Traceback" not in err


def test_training_from_a_solver_file_merges_its_states(tmp_path: Path) -> None:
    """Caffe's Solver builds its train net with ``train_state`` and its test net with
    ``test_state`` merged over the net's own state (solver.cpp InitTrainNet/InitTestNets)."""
    from netdsl import load_training

    (tmp_path / "tiny.prototxt").write_text(LENET)
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "tiny.prototxt"\nbase_lr: 0.01\nmax_iter: 10\n'
                      'train_state { stage: "deploy" level: 2 }\n'
                      'test_state { level: 3 }\n')
    setup = load_training(solver)
    assert [x.name for x in setup.train_net.layers] == ["data", "ip", "deployed", "deep"]
    assert [x.name for x in setup.test_net.layers] == ["data", "ip", "deep"]
