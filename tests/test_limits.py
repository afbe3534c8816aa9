"""Front-end limits (netdsl/limits.py): every hostile input is refused before the work it
would cause, with a diagnostic at its line and column, through the API and the CLI; each
NETDSL_MAX_<NAME> raises its limit; real specs stay far under every default."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import netdsl
from netdsl import limits
from netdsl import syntax as s
from netdsl.cli import main
from netdsl.diagnostics import DataError, NetdslError, Span
from netdsl.parse import parse
from netdsl.resolve import default_loader, resolve
from tests.shared import ROOT, caffe_files


def _doubling(n: int, op: str) -> str:
    lines = ['let s0 = "ab"']
    for i in range(1, n + 1):
        expr = f"$s{i - 1} + $s{i - 1}" if op == "+" else f'"${{s{i - 1}}}${{s{i - 1}}}"'
        lines.append(f"let s{i} = {expr}")
    return "\n".join(lines) + f"\nx: $s{n}\n"


def _squaring(n: int) -> str:
    return "let a0 = 10\n" + "".join(f"let a{i} = $a{i - 1} * $a{i - 1}\n"
                                     for i in range(1, n + 1)) + f"x: $a{n}\n"


def _let_chain(n: int) -> str:
    return "let a0 = 1\n" + "".join(f"let a{i} = $a{i - 1} + 1\n"
                                    for i in range(1, n + 1)) + f"x: $a{n}\n"


def _shared_lists(n: int) -> str:
    """Each let holds the previous one twice: 2**n items once written out."""
    return "let l0 = [1, 2]\n" + "".join(f"let l{i} = [$l{i - 1}, $l{i - 1}]\n"
                                         for i in range(1, n + 1)) + f"x: $l{n}\n"


def _joined_lists(n: int) -> str:
    return "let l0 = [1, 2]\n" + "".join(f"let l{i} = $l{i - 1} + $l{i - 1}\n"
                                         for i in range(1, n + 1)) + f"x: $l{n}\n"


#: (id, text, "line:col", message substring): the inputs measured before the limits
#: (RecursionError and ValueError tracebacks, hangs), at their default limits.
HOSTILE = [
    ("deep_list", "x: " + "[" * 3000 + "1" + "]" * 3000 + "\n", "1:104",
     "nesting too deep, over the limit of 100 levels"),
    ("deep_parens", "x: " + "(" * 3000 + "1" + ")" * 3000 + "\n", "1:104",
     "nesting too deep"),
    ("deep_blocks", "a {" * 3000 + "}" * 3000 + "\n", "1:303", "nesting too deep"),
    ("deep_calls", "x: " + "abs(" * 3000 + "1" + ")" * 3000 + "\n", "1:407",
     "nesting too deep"),
    ("operator_chain", "x: " + "+".join(["1"] * 5000) + "\n", "1:4", "nesting too deep"),
    ("minus_chain", "let y = 2\nx: " + "-" * 150 + "$y\n", "2:104", "nesting too deep"),
    ("let_chain", _let_chain(300), "252:12", "through 51 variables"),
    ("int_digits", "x: " + "7" * 5000 + "\n", "1:4",
     "an integer literal of 5,000 digits, over the limit of 400"),
    ("int_digits_in_int", 'x: int("' + "7" * 5000 + '")\n', "1:8", "int() of a string"),
    ("int_bits", _squaring(40), "10:10", "an integer of up to 1,702 bits"),
    ("string_plus", _doubling(40, "+"), "20:11", "a string of 1,048,576 characters"),
    ("string_interpolation", _doubling(40, "${}"), "20:11", "a string of 1,048,576"),
    ("shared_lists", _shared_lists(40), "19:1", "a value of 1,048,575 items"),
    ("joined_lists", _joined_lists(40), "20:11", "a list of 1,048,577 items"),
    ("repeat", "repeat 10000000 as i { x: $i }\n", "1:8", "repeat count 10000000"),
]


@pytest.mark.parametrize(("text", "where", "message"), [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_hostile_input_api(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = tmp_path / "hostile.net"
    path.write_text(text)
    with pytest.raises(NetdslError) as e:
        netdsl.load_spec(path)
    assert f"{e.value.span.line}:{e.value.span.col}" == where, e.value
    assert message in e.value.message


@pytest.mark.parametrize(("text", "where", "message"), [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_hostile_input_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                           where: str, message: str) -> None:
    path = tmp_path / "hostile.net"
    path.write_text(text)
    assert main(["shapes", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:{where}: error: ") and message in first, err
    assert "NETDSL_MAX_" in err  # says how to raise it


def test_no_recursion_depends_on_depth(tmp_path: Path) -> None:
    """Far past Python's own recursion limit, still a diagnostic."""
    path = tmp_path / "deep.net"
    path.write_text("x: " + "[" * 200_000 + "]" * 200_000 + "\n")
    with pytest.raises(NetdslError, match="nesting too deep"):
        netdsl.load_spec(path)
    assert sys.getrecursionlimit() < 200_000


# --------------------------------------------------------------------------- overrides


#: (limit, text that passes the default but not the lowered value, the lowered value,
#: text over the default, a raised value under which it passes)
OVERRIDES = [
    ("DEPTH", "x: " + "[" * 30 + "]" * 30, 20, "x: " + "[" * 150 + "]" * 150, 200),
    ("INT_DIGITS", "x: " + "9" * 30, 20, "x: " + "9" * 450, 500),
    ("INT_BITS", _squaring(5), 64, _squaring(9), 4000),
    ("STRING_LENGTH", _doubling(12, "+"), 5000, _doubling(20, "+"), 3_000_000),
    ("VALUE_SIZE", _shared_lists(12), 5000, _shared_lists(20), 5_000_000),
    ("REPEAT", "repeat 200 as i { x: $i }", 100, "repeat 100001 as i { x: $i }", 100_001),
    ("ITERATIONS", "repeat 10 { repeat 10 as i { x: $i } }", 50,
     "repeat 1100 { repeat 1000 as i { x: 1 } }", 2_000_000),
]


@pytest.mark.parametrize(("name", "small", "lowered", "big", "raised"), OVERRIDES,
                         ids=[o[0] for o in OVERRIDES])
def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, small: str,
                      lowered: int, big: str, raised: int) -> None:
    env = limits.LIMITS[name].env
    a, b = tmp_path / "small.net", tmp_path / "big.net"
    a.write_text(small + "\n")
    b.write_text(big + "\n")
    netdsl.load_spec(a)
    monkeypatch.setenv(env, str(lowered))
    with pytest.raises(NetdslError):
        netdsl.load_spec(a)
    if name == "ITERATIONS":  # 1.1M iterations: too slow to run whole; lowered shows it
        return
    monkeypatch.delenv(env)
    with pytest.raises(NetdslError):
        netdsl.load_spec(b)
    monkeypatch.setenv(env, str(raised))
    netdsl.load_spec(b)


LAYER = 'layer {{ name: "r${{i}}_{k}" type: "ReLU" bottom: "data" top: "data" }}'


def test_layers_and_group_depth_overrides(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.net"
    path.write_text("repeat 10 as i { " + LAYER.format(k=0) + " }\n")
    netdsl.load_spec(path)
    monkeypatch.setenv("NETDSL_MAX_LAYERS", "5")
    with pytest.raises(NetdslError, match="more than 5 layers"):
        netdsl.load_spec(path)
    monkeypatch.delenv("NETDSL_MAX_LAYERS")
    path.write_text('group g() {\n  layer { name: "inner" type: g }\n}\n'
                    'layer { name: "b" type: g bottom: "data" }\n')
    monkeypatch.setenv("NETDSL_MAX_GROUP_DEPTH", "5")
    with pytest.raises(NetdslError, match="groups nested more than 5 deep"):
        netdsl.load_spec(path)


@pytest.mark.parametrize(("value", "message"), [
    ("abc", "is not a whole number"), ("0", "must be at least 1"),
    ("10000", "the most netdsl can check safely"),
])
def test_bad_env_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str], value: str, message: str) -> None:
    path = tmp_path / "a.net"
    path.write_text("x: [1]\n")
    monkeypatch.setenv("NETDSL_MAX_DEPTH", value)
    with pytest.raises(DataError, match=message):
        netdsl.load_spec(path)
    assert main(["shapes", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "NETDSL_MAX_DEPTH" in err and message in err


def test_every_limit_is_documented() -> None:
    for name, lim in limits.LIMITS.items():
        assert lim.name == name and lim.env == f"NETDSL_MAX_{name}"
        assert lim.doc and lim.default >= 1
        assert lim.ceiling is None or lim.ceiling >= lim.default
        assert limits.value(name) == lim.default


# --------------------------------------------------------------------------- imports


def _diamonds(folder: Path, levels: int) -> Path:
    """main imports a0 and b0; each of a_i, b_i imports a_{i+1} and b_{i+1}: 2**(levels+1)
    paths to the last level, through 2 * levels + 1 files."""
    for i in range(levels):
        nxt = f'import "a{i + 1}.net"\nimport "b{i + 1}.net"\n' if i + 1 < levels else ""
        for side in "ab":
            (folder / f"{side}{i}.net").write_text(f"{nxt}let v{side}{i} = {i}\n")
    main_net = folder / "main.net"
    main_net.write_text('import "a0.net"\nimport "b0.net"\nx: 1\n')
    return main_net


def test_diamond_imports_are_read_once(tmp_path: Path) -> None:
    main_net = _diamonds(tmp_path, 5)
    reads: dict[str, int] = {}

    def counting(path: str, span: Span) -> s.File:
        reads[path] = reads.get(path, 0) + 1
        return default_loader(path, span)

    spec = resolve(parse(main_net.read_text(), str(main_net)), counting)
    assert len(reads) == 10 and set(reads.values()) == {1}, reads
    assert [f.key for f in spec.items] == ["x"]


def test_too_many_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main_net = _diamonds(tmp_path, 10)  # 2 + 4 + ... + 2**10 = 2046 import paths
    with pytest.raises(NetdslError, match="more than 1000 imports") as e:
        netdsl.load_spec(main_net)
    assert "NETDSL_MAX_IMPORTS" in (e.value.hint or "")
    monkeypatch.setenv("NETDSL_MAX_IMPORTS", "3000")
    netdsl.load_spec(main_net)


def test_import_depth_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.net").write_text(f'import "f{i + 1}.net"\n')
    (tmp_path / "f5.net").write_text("let x = 1\n")
    netdsl.load_spec(tmp_path / "f0.net")
    monkeypatch.setenv("NETDSL_MAX_IMPORT_DEPTH", "3")
    with pytest.raises(NetdslError, match="imports nested more than 3 deep"):
        netdsl.load_spec(tmp_path / "f0.net")


def test_import_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "big.net").write_text("let pad = 1" + " " * 500 + "\n")
    (tmp_path / "small.net").write_text("let other = 2\n")
    main_net = tmp_path / "main.net"
    main_net.write_text('import "small.net"\nimport "big.net"\nx: 1\n')
    netdsl.load_spec(main_net)
    monkeypatch.setenv("NETDSL_MAX_IMPORT_BYTES", "300")
    with pytest.raises(NetdslError, match="imported files of 526 bytes in all") as e:
        netdsl.load_spec(main_net)
    assert (e.value.span.path, e.value.span.line, e.value.span.col) == (str(main_net), 2, 1)
    assert main(["shapes", str(main_net)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{main_net}:2:1: error: ") and "Traceback" not in err


# --------------------------------------------------------------------------- --set


ALEXNET = str(ROOT / "specs" / "alexnet.net")


@pytest.mark.parametrize(("flag", "col", "message"), [
    ("conv1.kernal_size=3", 7, "unknown field 'kernal_size'"),
    ("solver.base_lrr=3", 8, "unknown field 'base_lrr'"),
    ("conv1.weight_filler.typo=1", 21, "unknown field 'typo'"),
    ("nosuch.kernel_size=3", 1, "unknown top-level field 'nosuch'"),
    ("conv1.kernel_size=0", 19, "kernel_size must be at least 1"),  # a value: at it
    ("conv1.kernel_size=abc", 19, "must be an integer"),
    ("widht=2", 1, "there is no variable 'widht'"),
])
def test_set_caret_points_at_the_key(capsys: pytest.CaptureFixture[str], flag: str, col: int,
                                     message: str) -> None:
    assert main(["shapes", ALEXNET, "--set", flag]) == 1
    err = capsys.readouterr().err
    key = flag.split("=")[0]
    first = err.splitlines()[0]
    assert first.startswith(f"<--set {key}>:1:{col}: error: ") and message in first, err
    caret = next(ln for ln in err.splitlines() if "^" in ln and "|" in ln)
    assert caret.index("^") == caret.index("|") + 1 + col


def test_set_key_too_deep(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", ALEXNET, "--set", ".".join(["a"] * 300) + "=1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "NETDSL_MAX_DEPTH" in err


def test_set_value_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", ALEXNET, "--set", "width=" + "9" * 500]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "500 digits" in err


# --------------------------------------------------------------------------- real specs


#: A fraction of each default: the shipped specs and Caffe's nets stay under these.
TIGHT = {"DEPTH": 12, "INT_DIGITS": 25, "INT_BITS": 128, "STRING_LENGTH": 10_000,
         "VALUE_SIZE": 100_000, "REPEAT": 1000, "ITERATIONS": 10_000, "LAYERS": 10_000,
         "GROUP_DEPTH": 8, "IMPORT_DEPTH": 8, "IMPORTS": 100, "IMPORT_BYTES": 1 << 20}

REAL = sorted((ROOT / "specs").glob("*.net")) + caffe_files("nets") + caffe_files("solvers")


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_specs_under_the_limits(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(TIGHT) == set(limits.LIMITS)
    for name, value in TIGHT.items():
        monkeypatch.setenv(limits.LIMITS[name].env, str(value))
    netdsl.load_spec(path)


def test_limit_values_are_read_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    get: Callable[[str], int] = limits.value
    assert get("DEPTH") == 100
    monkeypatch.setenv("NETDSL_MAX_DEPTH", "1.5e2")
    assert get("DEPTH") == 150
