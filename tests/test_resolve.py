"""Stage 5: imports, variables, groups, repeat and edits resolved into a flat literal Spec."""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path

import pytest

from netdsl import syntax as s
from netdsl.caffe_compat import upgrade
from netdsl.diagnostics import NetdslError, Span, render
from netdsl.parse import parse, parse_file
from netdsl.resolve import default_loader, resolve

FIXTURES = Path(__file__).parent / "fixtures" / "errors"
resolve_mod = importlib.import_module("netdsl.resolve")


# --------------------------------------------------------------------------- helpers


def R(text: str, overrides: dict[str, str] | None = None, path: str = "t.net") -> s.Spec:
    return resolve(upgrade(parse(text, path)), overrides=overrides or {})


def RF(tmp_path: Path, files: dict[str, str], main: str = "main.net",
       overrides: dict[str, str] | None = None) -> s.Spec:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return resolve(upgrade(parse_file(tmp_path / main)), overrides=overrides or {})


def err(text: str, overrides: dict[str, str] | None = None) -> NetdslError:
    with pytest.raises(NetdslError) as ei:
        R(text, overrides)
    return ei.value


def at(e: NetdslError) -> tuple[int, int]:
    return (e.span.line, e.span.col)


def plain(v: s.Value):
    """A literal as plain Python: scalars, lists, and blocks as lists of (key, value)."""
    if isinstance(v, s.Scalar):
        return v.value
    if isinstance(v, s.ListValue):
        return [plain(i) for i in v.items]
    if isinstance(v, s.Block):
        return [(f.key, plain(f.value)) for f in v.items]
    raise AssertionError(f"not literal: {v!r}")


def layers(spec: s.Spec) -> list[s.Block]:
    return [f.value for f in spec.items if f.key == "layer"]  # type: ignore[misc]


def names(spec: s.Spec) -> list[str]:
    return [str(b.scalar("name")) for b in layers(spec)]


def get(spec: s.Spec, name: str) -> s.Block:
    return next(b for b in layers(spec) if b.scalar("name") == name)


def vals(b: s.Block, key: str) -> list:
    out: list = []
    for f in b.fields(key):
        v = plain(f.value)
        out.extend(v if isinstance(f.value, s.ListValue) else [v])
    return out


def wiring(spec: s.Spec) -> list[tuple[str, list, list]]:
    return [(str(b.scalar("name")), vals(b, "bottom"), vals(b, "top")) for b in layers(spec)]


def top(spec: s.Spec, key: str):
    return [plain(f.value) for f in spec.items if f.key == key]


def is_literal(v: s.Value) -> bool:
    if isinstance(v, s.Scalar):
        return "${" not in str(v.value)
    if isinstance(v, s.ListValue):
        return all(is_literal(i) for i in v.items)
    if isinstance(v, s.Block):
        return all(isinstance(f, s.Field) and is_literal(f.value) for f in v.items)
    return False


# --------------------------------------------------------------------------- imports


BASE = """\
name: "base"
let w = 16
solver { base_lr: 0.01 momentum: 0.9 clip { max: 1 norm: 2 } }
data { source: "train" batch: 64 include { phase: TRAIN } }
data { source: "test" batch: 10 include { phase: TEST } }
input { name: "data" shape: [3, 32, 32] }
input { name: "label" shape: [1] }
layer { name: "conv1" type: Convolution bottom: "data" num_output: $w }
layer { name: "relu1" type: ReLU bottom: "conv1" top: "conv1" }
layer { name: "fc" type: InnerProduct bottom: "conv1" num_output: 10 }
"""


def test_import_merges_fields_blocks_and_layers(tmp_path):
    spec = RF(tmp_path, {"lib/base.net": BASE, "main.net": """\
import "lib/base.net"
name: "variant"
let w = 32
solver { base_lr: 0.02 clip { max: 5 } }
data { root: "/data" }
data { batch: 20 phase: TEST }
input { name: "label" shape: [2] }
layer { name: "relu1" type: PReLU bottom: "conv1" top: "conv1" }
layer { name: "extra" type: Softmax }
"""})
    assert top(spec, "name") == ["variant"]
    # solver merged field by field, recursively
    assert top(spec, "solver") == [[("base_lr", 0.02), ("momentum", 0.9),
                                    ("clip", [("max", 5), ("norm", 2)])]]
    # a data block without a phase merges into both; with a phase into that one only
    train, test = top(spec, "data")
    assert ("root", "/data") in train and ("batch", 64) in train
    assert ("root", "/data") in test and ("batch", 20) in test and ("batch", 10) not in test
    # inputs merge by name
    assert top(spec, "input") == [[("name", "data"), ("shape", [3, 32, 32])],
                                  [("name", "label"), ("shape", [2])]]
    # imported items first; a same-named layer replaces at its position; the let overrides
    assert names(spec) == ["conv1", "relu1", "fc", "extra"]
    assert get(spec, "relu1").scalar("type") == "PReLU"
    assert get(spec, "conv1").scalar("num_output") == 32
    # imported fields say where they were imported
    conv1 = next(f for f in spec.items if f.key == "layer")
    assert conv1.notes[-1][0] == "imported by main.net"
    assert conv1.notes[-1][1].path.endswith("main.net") and conv1.notes[-1][1].line == 1


def test_nested_imports_are_relative_to_each_file(tmp_path):
    spec = RF(tmp_path, {
        "a/common.net": 'let std = 0.01\nlet base = "a"\n',
        "a/net.net": 'import "common.net"\nlet base = "net"\n'
                     'layer { name: "${base}1" type: ReLU }\nlayer { name: "f" type: X '
                     'weight_filler: gaussian($std) }\n',
        "main.net": 'import "a/net.net"\nlet std = 0.5\n',
    })
    assert names(spec) == ["net1", "f"]
    assert plain(get(spec, "f").first("weight_filler").value) == [("type", "gaussian"),
                                                                   ("std", 0.5)]


def test_layer_override_by_phase(tmp_path):
    base = ('layer { name: "d" type: Data include { phase: TRAIN } batch: 1 }\n'
            'layer { name: "d" type: Data include { phase: TEST } batch: 2 }\n')
    spec = RF(tmp_path, {"b.net": base, "main.net":
                         'import "b.net"\nlayer { name: "d" type: Data phase: TEST batch: 3 }\n'})
    assert [b.scalar("batch") for b in layers(spec)] == [1, 3]
    spec = RF(tmp_path, {"b.net": base, "main.net":
                         'import "b.net"\nlayer { name: "d" type: Input batch: 4 }\n'})
    assert [b.scalar("batch") for b in layers(spec)] == [4]


def test_imported_file_edits_apply_before_the_importer(tmp_path):
    spec = RF(tmp_path, {
        "b.net": 'layer { name: "a" type: ReLU }\nlayer { name: "b" type: ReLU }\n'
                 'update "b" { k: 1 }\n',
        "main.net": 'import "b.net"\nupdate "a" { k: 2 }\nremove "b"\n',
    })
    assert names(spec) == ["a"]
    assert get(spec, "a").scalar("k") == 2


def test_importer_reinstantiates_an_imported_instance(tmp_path):
    lib = TOWER + """\
layer { name: "t1" type: tower bottom: "data" width: 16 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
"""
    spec = RF(tmp_path, {"lib.net": lib, "main.net": """\
import "lib.net"
layer { name: "t1" type: tower bottom: "data" width: 32 k: 1 }
"""})
    assert names(spec) == ["t1/conv", "t1/relu", "t1/pool", "fc"]
    assert get(spec, "t1/conv").scalar("num_output") == 32
    spec = RF(tmp_path, {"lib.net": lib, "main.net":
                         'import "lib.net"\nlayer { name: "t1" type: Pooling bottom: "data" }\n'})
    assert wiring(spec) == [("t1", ["data"], []), ("fc", ["t1"], [])]


def test_importer_redefines_a_group(tmp_path):
    spec = RF(tmp_path, {"lib.net": TOWER + 'layer { name: "t" type: tower width: 8 }\n',
                         "main.net": 'import "lib.net"\n'
                                     'group tower(width) { layer { name: "fc" v: $width } }\n'})
    assert names(spec) == ["t/fc"]


def test_import_with_custom_loader():
    seen = []

    def load(path: str, span: Span) -> s.File:
        seen.append(path)
        return parse('let w = 3\nlayer { name: "x" type: ReLU k: $w }', path)

    main = parse('import "sub/lib.net"\nlet w = 4\n', "/proj/main.net")
    spec = resolve(main, load)
    assert seen == ["/proj/sub/lib.net"]
    assert get(spec, "x").scalar("k") == 4


def test_default_loader_caches(tmp_path):
    p = tmp_path / "x.net"
    p.write_text("a: 1\n")
    assert default_loader(str(p), Span("m")) is default_loader(str(p), Span("m"))


def test_import_cycle(tmp_path):
    (tmp_path / "a.net").write_text('# a\nimport "b.net"\n')
    (tmp_path / "b.net").write_text('\n\n  import "a.net"\n')
    with pytest.raises(NetdslError) as ei:
        resolve(parse_file(tmp_path / "a.net"))
    e = ei.value
    assert e.message == "import cycle: a.net -> b.net -> a.net"
    assert e.span.path.endswith("a.net") and at(e) == (2, 1)
    assert [(n, sp.line, sp.col) for n, sp in e.notes] == [("'b.net' imports 'a.net'", 3, 3)]


def test_import_self_cycle(tmp_path):
    (tmp_path / "a.net").write_text('import "./a.net"\n')
    with pytest.raises(NetdslError, match=r"import cycle: a.net -> a.net"):
        resolve(parse_file(tmp_path / "a.net"))


def test_missing_import_names_resolved_path(tmp_path):
    (tmp_path / "m.net").write_text('name: "x"\n  import "nope/x.net"\n')
    with pytest.raises(NetdslError) as ei:
        resolve(parse_file(tmp_path / "m.net"))
    e = ei.value
    assert at(e) == (2, 3)
    assert str(tmp_path / "nope" / "x.net") in e.message
    assert e.message.startswith('cannot import "nope/x.net"')
    assert "relative to the importing file" in (e.hint or "")


def test_syntax_error_in_imported_file_keeps_its_location(tmp_path):
    (tmp_path / "b.net").write_text("a: 1\nb: }\n")
    (tmp_path / "m.net").write_text('import "b.net"\n')
    with pytest.raises(NetdslError) as ei:
        resolve(parse_file(tmp_path / "m.net"))
    assert ei.value.span.path.endswith("b.net") and ei.value.span.line == 2


def test_import_not_at_top_level():
    e = err('repeat 2 { import "x.net" }')
    assert e.message == "import is not allowed inside a repeat" and at(e) == (1, 12)


def test_duplicate_let_and_group_in_one_file():
    e = err("let a = 1\nlet a = 2\n")
    assert e.message == "variable 'a' is defined twice" and at(e) == (2, 1)
    e = err("group g() { layer { name: \"x\" } }\ngroup g() { layer { name: \"y\" } }\n")
    assert e.message == "group 'g' is defined twice" and at(e) == (2, 1)


# --------------------------------------------------------------------------- variables


@pytest.mark.parametrize("expr, want", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("7 / 2", 3.5), ("6 / 3", 2.0), ("7 // 2", 3),
    ("-7 // 2", -4), ("7.5 // 2", 3.0), ("7 % 3", 1), ("-$a", -3), ("$a - -2", 5),
    ("$a * 0.5", 1.5), ('"ab" + "cd"', "abcd"), ("int(3.9)", 3), ('int("12")', 12),
    ("round(2.6)", 3), ("round(3.14159, 2)", 3.14), ("floor(-1.5)", -2), ("ceil(1.2)", 2),
    ("min(4, $a, 9)", 3), ("max([1, 7, 2])", 7), ("abs(-2.5)", 2.5), ("str(12)", "12"),
    ("str(0.1)", "0.1"), ("letter(0)", "a"), ("letter(25)", "z"), ("letter(26)", "aa"),
    ("letter($a + 1)", "e"), ("[1, $a] + [4]", [1, 3, 4]), ('"x${$a}y"', "x3y"),
    ('"conv${a + 1}_${letter(a)}"', "conv4_d"), ('"cost: $5"', "cost: $5"),
])
def test_expressions(expr, want):
    spec = R(f"let a = 3\nv: {expr}\n")
    got = top(spec, "v")[0]
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("expr, want", [
    ("constant(1)", [("type", "constant"), ("value", 1)]),
    ("constant()", [("type", "constant")]),
    ("gaussian(0.01)", [("type", "gaussian"), ("std", 0.01)]),
    ("gaussian(0.01, 0.5)", [("type", "gaussian"), ("std", 0.01), ("mean", 0.5)]),
    ("uniform(-1, 1)", [("type", "uniform"), ("min", -1), ("max", 1)]),
    ("xavier()", [("type", "xavier")]), ("msra()", [("type", "msra")]),
    ("bilinear()", [("type", "bilinear")]),
    ("positive_unitball()", [("type", "positive_unitball")]),
])
def test_filler_constructors(expr, want):
    spec = R(f"layer {{ name: \"c\" weight_filler: {expr} }}")
    f = get(spec, "c").first("weight_filler")
    assert isinstance(f.value, s.Block) and plain(f.value) == want


def test_filler_equals_block_form():
    a = R("layer { weight_filler: gaussian(0.01) }")
    b = R('layer { weight_filler { type: "gaussian" std: 0.01 } }')
    assert plain(layers(a)[0]) == plain(layers(b)[0])


def test_lets_are_lazy_and_usable_everywhere():
    spec = R("""\
let layers_n = $half * 2
let half = 1
let dims = [3, $side, $side]
let side = 8 * 4
input { name: "data" shape: $dims }
group g(k) { layer { name: "c" type: Convolution kernel_size: $k pad: [$k // 2] } }
layer { name: "x" type: g k: $side // 8 }
repeat $layers_n as i { layer { name: "r${i}" type: ReLU } }
""")
    assert top(spec, "input") == [[("name", "data"), ("shape", [3, 32, 32])]]
    assert get(spec, "x/c").scalar("kernel_size") == 4
    assert vals(get(spec, "x/c"), "pad") == [2]
    assert names(spec) == ["x/c", "r0", "r1"]


def test_local_lets_in_blocks_groups_and_repeats():
    spec = R("""\
let k = 100
layer { let k = 3 name: "a" kernel_size: $k pad: $k // 2 }
group g(w) { let half = $w / 2  layer { name: "c" num_output: $half } }
layer { name: "i" type: g w: 8 }
repeat 2 as i { let sq = $i * $i  layer { name: "s${i}" v: $sq } }
b: $k
""")
    assert get(spec, "a").scalar("kernel_size") == 3 and get(spec, "a").scalar("pad") == 1
    assert get(spec, "i/c").scalar("num_output") == 4.0
    assert [get(spec, f"s{i}").scalar("v") for i in (0, 1)] == [0, 1]
    assert top(spec, "b") == [100]


def test_output_is_literal_only():
    spec = R("""\
let w = 2
group g(n) { repeat $n as j { layer { name: "${name}_l${j}" v: [$j, "${name}"] } } }
repeat $w as i { layer { name: "g${i}" type: g n: $i + 1 } }
solver { lr: 0.1 * $w  steps: [$w, $w * 2] }
""")
    assert all(isinstance(f, s.Field) and is_literal(f.value) for f in spec.items)
    assert names(spec) == ["g0_l0", "g1_l0", "g1_l1"]


def test_let_cycle():
    e = err("let a = $b + 1\nlet b = 2 * $c\nlet c = $a\nx: $a\n")
    assert e.message == "variables depend on each other in a cycle: $a -> $b -> $c -> $a"
    assert at(e) == (3, 9)
    e = err("let a = $a\n")
    assert e.message == "variables depend on each other in a cycle: $a -> $a"


def test_undefined_variable_did_you_mean():
    e = err("let width = 3\nlayer {\n  num_output: $widht * 2\n}\n")
    assert e.message == "undefined variable '$widht'"
    assert at(e) == (3, 15) and e.hint == "did you mean 'width'?"
    e = err("x: $nothing\n")
    assert e.hint == "define it with: let nothing = ..."


def test_unused_let_with_error_is_still_reported():
    e = err("let a = 1\nlet b = $zz\n")
    assert e.message == "undefined variable '$zz'" and at(e) == (2, 9)


def test_undefined_function_did_you_mean():
    e = err("layer {\n  weight_filler: gausian(0.01)\n}\n")
    assert e.message == "unknown function 'gausian'"
    assert at(e) == (2, 18) and e.hint == "did you mean 'gaussian'?"


def test_type_errors_at_the_expression():
    e = err('let s = "a"\nx: 1 + $s * 0.5\n')
    assert e.message == "cannot multiply a string and a float with '*'"
    assert at(e) == (2, 8)
    e = err('x: "conv" + 1\n')
    assert e.message == "cannot add a string and an int with '+'"
    assert "str(" in (e.hint or "")
    e = err("x: Convolution * 2\n")
    assert "the word 'Convolution'" in e.message and "$name" in (e.hint or "")
    e = err('x: -"a"\n')
    assert e.message == "cannot negate a string" and at(e) == (1, 4)


@pytest.mark.parametrize("expr, message", [
    ("1 / 0", "division by zero"), ("5 % 0", "division by zero"),
    ("int(1, 2)", "int() takes 1 argument(s), got 2"),
    ("min()", "min() takes at least 1 argument(s), got 0"),
    ('floor("a")', "floor() needs a number, got a string"),
    ("letter(-1)", "letter() needs an int >= 0, got -1"),
    ('int("x1")', "int() cannot read 'x1' as an integer"),
    ("uniform(1)", "uniform() takes 2 argument(s), got 1"),
    ('str([1])', "cannot put a list into a string"),
    ("1e308 * 10", "the result is not a finite number"),
])
def test_expression_errors(expr, message):
    e = err(f"x: {expr}\n")
    assert e.message == message and e.span.line == 1


def test_interpolation_errors_point_inside_the_string():
    e = err('let i = 1\nlayer { name: "conv${i + j}" }\n')
    assert e.message == "undefined variable '$j'" and at(e) == (2, 26)
    e = err('layer { name: "conv${i" }\n')
    assert e.message == "unterminated '${' in string" and at(e) == (1, 20)
    e = err('x: "a${1 +}"\n')
    assert e.message.startswith("bad expression") and at(e) == (1, 11)
    e = err('x: "a${}"\n')
    assert e.message == "empty '${}' in string"


def test_override_let(tmp_path):
    text = 'let w = 1\nlet name = "a"\nlet lr = 0.1\nv: [$w, $name, $lr]\n'
    spec = R(text, {"w": "2 * 3", "name": "resnet", "lr": "1e-3"})
    assert top(spec, "v") == [[6, "resnet", 0.001]]
    spec = R(text, {"name": "data/x.txt", "w": "$lr * 10"})
    assert top(spec, "v") == [[1.0, "data/x.txt", 0.1]]
    spec = R(text, {"name": '"quoted"'})
    assert top(spec, "v") == [[1, "quoted", 0.1]]


def test_override_unknown_let():
    e = err("let width = 1\nlet depth = 2\n", {"widht": "3"})
    assert e.message == "--set widht: there is no variable 'widht' (variables: depth, width)"
    assert e.hint == "did you mean 'width'?"
    assert "widht=3" in render(e)
    e = err("x: 1\n", {"w": "3"})
    assert "(variables: none)" in e.message


def test_override_bad_expression_points_into_the_flag():
    e = err("let w = 1\nx: $w\n", {"w": "2 * $q"})
    assert e.message == "undefined variable '$q'" and at(e) == (1, 7)
    assert e.span.path == "<--set w>"


def test_override_dotted_fields():
    text = ('solver { base_lr: 0.01 clip { max: 1 } }\n'
            'layer { name: "conv1" num_output: 3 }\n')
    spec = R(text, {"solver.base_lr": "0.02", "solver.clip.max": "5", "data.root": "/x/y",
                    "conv1.num_output": "8", "solver.type": "Adam", "solver.steps": "[1, 2]"})
    assert top(spec, "solver") == [[("base_lr", 0.02), ("clip", [("max", 5)]),
                                    ("type", "Adam"), ("steps", [1, 2])]]
    assert top(spec, "data") == [[("root", "/x/y")]]
    assert get(spec, "conv1").scalar("num_output") == 8


# --------------------------------------------------------------------------- groups


TOWER = """\
group tower(width, k = $width // 8) {
  layer { name: "conv" type: Convolution bottom: $bottom num_output: $width kernel_size: $k }
  layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
  layer { name: "pool" type: Pooling bottom: "conv" }
}
input { name: "data" shape: [3, 8, 8] }
"""


def test_group_instance_prefixes_local_names():
    spec = R(TOWER + """\
layer { name: "t1" type: tower bottom: "data" width: 16 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
""")
    assert wiring(spec) == [
        ("t1/conv", ["data"], []),
        ("t1/relu", ["t1/conv"], ["t1/conv"]),
        ("t1/pool", ["t1/conv"], []),
        ("fc", ["t1/pool"], []),
    ]
    assert get(spec, "t1/conv").scalar("kernel_size") == 2


def test_group_explicit_top_renames_output():
    spec = R(TOWER + """\
layer { name: "t1" type: tower bottom: "data" top: "feat" width: 16 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
layer { name: "fc2" type: InnerProduct bottom: "feat" }
""")
    assert wiring(spec)[2:] == [("t1/pool", ["t1/conv"], ["feat"]), ("fc", ["feat"], []),
                                ("fc2", ["feat"], [])]


def test_group_output_renamed_through_in_place_chain():
    spec = R("""\
group cr() {
  layer { name: "conv" type: Convolution bottom: $bottom }
  layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
}
layer { name: "a" type: cr bottom: "data" top: "out" }
""")
    assert wiring(spec) == [("a/conv", ["data"], ["out"]), ("a/relu", ["out"], ["out"])]


def test_interpolated_and_computed_names_are_not_prefixed():
    spec = R("""\
group block(k) {
  layer { name: "${name}_branch2a" type: Convolution bottom: $bottom kernel_size: $k }
  layer { name: "bn" type: BatchNorm bottom: "${name}_branch2a" top: $top }
  layer { name: "local" type: ReLU bottom: $top }
}
layer { name: "res2a" type: block bottom: "pool1" k: 1 }
layer { name: "res2b" type: block(3) }
""")
    assert wiring(spec) == [
        ("res2a_branch2a", ["pool1"], []),
        ("res2a/bn", ["res2a_branch2a"], ["res2a"]),
        ("res2a/local", ["res2a"], []),
        ("res2b_branch2a", ["res2a/local"], []),
        ("res2b/bn", ["res2b_branch2a"], ["res2b"]),
        ("res2b/local", ["res2b"], []),
    ]


def test_group_special_variables():
    spec = R("""\
group g() {
  layer { name: "c" type: Concat bottom: $bottoms top: "${top}_x" info: [$name, $bottom, $tops] }
}
layer { name: "i" type: g bottom: "a" bottom: "b" top: "o" }
""")
    b = get(spec, "i/c")
    assert vals(b, "bottom") == ["a", "b"]
    assert plain(b.first("info").value) == ["i", "a", ["o"]]
    assert vals(b, "top") == ["o"]  # "${top}_x", then renamed to the instance's top


def test_group_bottom_defaults_to_previous_top():
    spec = R(TOWER + 'layer { name: "t" type: tower width: 8 }\n')
    assert vals(get(spec, "t/conv"), "bottom") == ["data"]


def test_group_common_fields_copied_unless_set():
    spec = R("""\
group g() {
  layer { name: "a" type: ReLU }
  layer { name: "b" type: ReLU devices: ["gpu:0"] include { phase: TEST } }
}
layer { name: "i" type: g bottom: "x" devices: ["gpu:1"] phase: TRAIN }
""")
    a, b = get(spec, "i/a"), get(spec, "i/b")
    assert vals(a, "devices") == ["gpu:1"] and a.scalar("phase") == "TRAIN"
    assert vals(b, "devices") == ["gpu:0"] and b.first("phase") is None


def test_group_param_named_like_a_common_field_is_an_argument():
    spec = R("""\
group g(devices) { layer { name: "a" type: ReLU where: $devices } }
layer { name: "i" type: g bottom: "x" devices: ["gpu:1"] }
""")
    a = get(spec, "i/a")
    assert a.first("devices") is None and vals(a, "where") == ["gpu:1"]


def test_positional_and_default_args():
    spec = R("""\
group g(a, b = $a * 10, c = "z") { layer { name: "l" v: [$a, $b, $c] } }
layer { name: "p" type: g(1) }
layer { name: "q" type: g(1, 2) c: "y" }
layer { name: "r" type: g a: 5 }
""")
    assert [vals(get(spec, n), "v") for n in ("p/l", "q/l", "r/l")] == [
        [1, 10, "z"], [1, 2, "y"], [5, 50, "z"]]


def test_nested_groups():
    spec = R("""\
group unit() {
  layer { name: "conv" type: Convolution bottom: $bottom }
  layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
}
group pair() {
  layer { name: "u1" type: unit bottom: $bottom }
  layer { name: "u2" type: unit bottom: "u1" }
  layer { name: "sum" type: Eltwise bottom: "u1" bottom: "u2" }
}
layer { name: "p" type: pair bottom: "data" devices: ["gpu:1"] }
layer { name: "after" type: ReLU bottom: "p" }
""")
    assert wiring(spec) == [
        ("p/u1/conv", ["data"], []),
        ("p/u1/relu", ["p/u1/conv"], ["p/u1/conv"]),
        ("p/u2/conv", ["p/u1/conv"], []),
        ("p/u2/relu", ["p/u2/conv"], ["p/u2/conv"]),
        ("p/sum", ["p/u1/conv", "p/u2/conv"], []),
        ("after", ["p/sum"], []),
    ]
    assert all(vals(b, "devices") == ["gpu:1"] for b in layers(spec)[:5])
    f = next(f for f in spec.items if f.key == "layer")
    assert [n for n, _ in f.notes] == ["expanded from instance 'p/u1' of group 'unit'",
                                       "expanded from instance 'p' of group 'pair'"]


def test_group_missing_argument():
    e = err(TOWER + 'layer { name: "t" type: tower bottom: "data" }\n')
    assert e.message == "instance 't' of group 'tower' is missing argument(s) 'width'"
    assert at(e) == (7, 1) and e.hint == "add width: ... to the instance"


def test_group_unknown_argument():
    e = err(TOWER + 'layer { name: "t" type: tower bottom: "data"\n  widht: 3 }\n')
    assert e.message == "group 'tower' has no parameter 'widht'"
    assert at(e) == (8, 3) and e.hint == "did you mean 'width'?"


def test_group_wrong_argument_count():
    e = err(TOWER + 'layer { name: "t" type: tower(1, 2, 3) }\n')
    assert e.message == "group 'tower' takes 2 argument(s), got 3"
    assert at(e) == (7, 1) and e.hint == "its parameters are: width, k"
    e = err(TOWER + 'layer { name: "t" type: tower(1) width: 2 }\n')
    assert e.message == "argument 'width' of group 'tower' is given twice"


def test_group_unknown_in_call_form():
    e = err(TOWER + 'layer { name: "t" type: towr(16) }\n')
    assert e.message == "unknown group 'towr'" and e.hint == "did you mean 'tower'?"
    assert at(e) == (7, 25)


def test_group_instance_needs_a_name_and_a_bottom():
    e = err(TOWER.replace("input", "#") + 'layer { type: tower width: 8 }\n')
    assert e.message == "an instance of group 'tower' needs a name"
    e = err(TOWER.replace("input", "#") + 'layer { name: "t" type: tower width: 8 }\n')
    assert e.message == "instance 't' of group 'tower' has no bottom"
    assert at(e) == (2, 50)  # the $bottom inside the body
    assert "expanded from instance 't' of group 'tower'" in render(e)


def test_group_reserved_param():
    e = err("group g(a, name) { layer { name: \"x\" } }\n")
    assert "'name' cannot be a group parameter" in e.message and at(e) == (1, 12)


def test_group_body_holds_only_layers():
    e = err("group g() { solver { x: 1 } }\nlayer { name: \"i\" type: g }\n")
    assert e.message == "a group body holds only layers; 'solver' is not a layer"
    assert at(e) == (1, 13)


def test_error_inside_group_names_definition_and_expansion_sites():
    e = err("""\
group g(w) {
  layer { name: "c" num_output: $w * "x" }
}
repeat 2 as i {
  layer { name: "i${i}" type: g w: $i }
}
""")
    assert e.message == "cannot multiply an int and a string with '*'"
    assert at(e) == (2, 33)
    assert [(n, sp.line) for n, sp in e.notes] == [
        ("expanded from instance 'i0' of group 'g'", 5),
        ("expanded from repeat with i = 0", 4)]
    text = render(e)
    assert "note: expanded from instance 'i0' of group 'g' (t.net:5:3)" in text


def test_runaway_recursion():
    start = time.perf_counter()
    e = err('group g() { layer { name: "x" type: g } }\nlayer { name: "a" type: g bottom: "d" }\n')
    assert e.message.startswith("runaway expansion: groups nested more than 32 deep")
    assert at(e) == (1, 13)
    assert len(e.notes) == 7 and e.notes[5] == ("...", None)
    assert e.notes[-1][0] == "expanded from instance 'a' of group 'g'" and e.notes[-1][1].line == 2
    assert time.perf_counter() - start < 2


def test_runaway_layer_count(monkeypatch):
    """The limit is MAX_LAYERS (100,000); a smaller one exercises the same check quickly."""
    assert resolve_mod.MAX_LAYERS == 100_000
    monkeypatch.setattr(resolve_mod, "MAX_LAYERS", 3000)
    e = err("""\
group g() { repeat 1000 { layer { name: "${name}_x" type: ReLU } } }
repeat 1000 as i { layer { name: "i${i}" type: g bottom: "d" } }
""")
    assert e.message == "runaway expansion: more than 3000 layers"
    assert at(e) == (1, 27)
    assert e.notes[0][0] == "expanded from iteration 0 of repeat"


def test_runaway_exponential_groups(monkeypatch):
    monkeypatch.setattr(resolve_mod, "MAX_LAYERS", 3000)
    text = "group g0() { layer { name: \"x\" type: ReLU } }\n"
    for i in range(1, 30):
        text += (f"group g{i}() {{ layer {{ name: \"a\" type: g{i - 1} }} "
                 f"layer {{ name: \"b\" type: g{i - 1} }} }}\n")
    text += 'layer { name: "top" type: g29 bottom: "d" }\n'
    start = time.perf_counter()
    e = err(text)
    assert e.message == "runaway expansion: more than 3000 layers"
    assert time.perf_counter() - start < 5


def test_runaway_iterations(monkeypatch):
    monkeypatch.setattr(resolve_mod, "MAX_ITERATIONS", 5000)
    e = err("repeat 100 { repeat 100 { } }\n")
    assert e.message == "runaway expansion: more than 5000 repeat iterations"
    assert at(e) == (1, 21)


# --------------------------------------------------------------------------- repeat


def test_repeat_top_level_and_nested():
    spec = R("""\
let n = 2
repeat $n as i {
  repeat 2 as j { layer { name: "l${i}${j}" type: ReLU k: $i * 10 + $j } }
}
repeat 2 { layer { name: "x" type: ReLU } }
""")
    assert names(spec) == ["l00", "l01", "l10", "l11", "x", "x"]
    assert get(spec, "l11").scalar("k") == 11
    f = next(f for f in spec.items if f.key == "layer")
    assert [n for n, _ in f.notes] == ["expanded from repeat with j = 0",
                                       "expanded from repeat with i = 0"]
    last = [f for f in spec.items if f.key == "layer"][-1]
    assert last.notes[0][0] == "expanded from iteration 1 of repeat"


def test_repeat_inside_blocks_repeats_fields():
    spec = R("solver { repeat 3 as i { stepvalue: 1000 * ($i + 1) } }")
    assert top(spec, "solver") == [[("stepvalue", 1000), ("stepvalue", 2000),
                                     ("stepvalue", 3000)]]


def test_repeat_in_group_with_instances():
    spec = R("""\
group unit() { layer { name: "c" type: Convolution bottom: $bottom } }
group stack(n) { repeat $n as i { layer { name: "${name}_u${i}" type: unit } } }
layer { name: "s" type: stack bottom: "data" n: 3 }
layer { name: "out" type: ReLU bottom: "s" }
""")
    assert wiring(spec) == [("s_u0/c", ["data"], []), ("s_u1/c", ["s_u0/c"], []),
                            ("s_u2/c", ["s_u1/c"], []), ("out", ["s_u2/c"], [])]


@pytest.mark.parametrize("count, message", [
    ("0", "repeat count must be a positive integer, got 0"),
    ("-2", "repeat count must be a positive integer, got -2"),
    ("2.5", "repeat count must be a positive integer, got 2.5"),
    ('"3"', "repeat count must be a positive integer, got a string"),
    ("$n - 3", "repeat count must be a positive integer, got -1"),
    ("200000", "runaway expansion: repeat count 200000 is over the limit of 100000"),
])
def test_repeat_count_errors(count, message):
    e = err(f"let n = 2\n\nrepeat {count} as i {{ layer {{ name: \"x\" }} }}\n")
    assert e.message == message and at(e) == (3, 8)


def test_error_in_repeat_body_has_note():
    e = err("repeat 3 as i {\n  layer { name: \"x\" v: 10 / ($i - 1) }\n}\n")
    assert e.message == "division by zero" and at(e) == (2, 24)
    assert e.notes[0][0] == "expanded from repeat with i = 1" and e.notes[0][1].line == 1


def test_statements_not_allowed_inside_bodies():
    e = err('group g() { remove "x" }\nlayer { name: "i" type: g }\n')
    assert e.message == "remove is not allowed in a group body" and at(e) == (1, 13)
    e = err('layer { name: "x" group a() {} }\n')
    assert e.message == "a group definition is not allowed inside a block"


# --------------------------------------------------------------------------- edits


NET = """\
input { name: "data" shape: [3, 8, 8] }
layer { name: "conv1" type: Convolution bottom: "data" top: "conv1" num_output: 8
        devices: ["gpu:1"] phase: TRAIN }
layer { name: "relu1" type: ReLU bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: LRN bottom: "conv1" top: "norm1" local_size: 5 alpha: 1 }
layer { name: "pool1" type: Pooling bottom: "norm1" top: "pool1" stride: 2 stride: 3 }
layer { name: "fc" type: InnerProduct bottom: "pool1" top: "fc" }
"""


def test_replace_keeps_wiring():
    spec = R(NET + 'replace "norm1" { type: BatchNorm eps: 0.001 }\n'
                   'replace "conv1" { type: Deconvolution num_output: 4 devices: ["gpu:0"] }\n')
    assert plain(get(spec, "norm1")) == [("name", "norm1"), ("type", "BatchNorm"),
                                         ("bottom", "conv1"), ("top", "norm1"), ("eps", 0.001)]
    c = get(spec, "conv1")
    assert c.scalar("type") == "Deconvolution" and c.scalar("num_output") == 4
    assert vals(c, "devices") == ["gpu:0"] and c.scalar("phase") == "TRAIN"
    assert names(spec) == ["conv1", "relu1", "norm1", "pool1", "fc"]
    f = [f for f in spec.items if f.key == "layer"][2]
    assert f.notes[0][0] == "replacing layer 'norm1'" and f.span.line == 8


def test_replace_without_type_overrides_fields():
    spec = R(NET + 'replace "norm1" { local_size: 3 }\n')
    assert plain(get(spec, "norm1")) == [("name", "norm1"), ("type", "LRN"), ("bottom", "conv1"),
                                         ("top", "norm1"), ("local_size", 3), ("alpha", 1)]


def test_replace_with_a_group():
    spec = R(NET + """\
group bnrelu(eps = 0.1) {
  layer { name: "bn" type: BatchNorm bottom: $bottom eps: $eps }
  layer { name: "relu" type: ReLU bottom: "bn" top: "bn" }
}
replace "norm1" { type: bnrelu(0.5) }
""")
    w = wiring(spec)
    assert w[2:5] == [("norm1/bn", ["conv1"], ["norm1"]), ("norm1/relu", ["norm1"], ["norm1"]),
                      ("pool1", ["norm1"], ["pool1"])]
    assert get(spec, "norm1/bn").scalar("eps") == 0.5


def test_update_replaces_all_occurrences():
    spec = R(NET + 'update "pool1" { stride: 1 kernel_size: 2 }\n')
    assert plain(get(spec, "pool1")) == [("name", "pool1"), ("type", "Pooling"),
                                         ("bottom", "norm1"), ("top", "pool1"), ("stride", 1),
                                         ("kernel_size", 2)]


def test_remove_rewires_readers():
    spec = R(NET + 'remove "norm1"\n')
    assert wiring(spec) == [("conv1", ["data"], ["conv1"]), ("relu1", ["conv1"], ["conv1"]),
                            ("pool1", ["conv1"], ["pool1"]), ("fc", ["pool1"], ["fc"])]


def test_remove_in_place_needs_no_rewiring():
    spec = R(NET + 'remove "relu1"\n')
    assert wiring(spec)[1] == ("norm1", ["conv1"], ["norm1"])


def test_remove_stops_at_an_in_place_rewriter():
    spec = R(NET + 'remove "conv1"\n')
    # relu1 reads the data instead and now makes blob conv1, which norm1 still reads
    assert wiring(spec)[:2] == [("relu1", ["data"], ["conv1"]), ("norm1", ["conv1"], ["norm1"])]


def test_remove_implicit_bottoms():
    spec = R("""\
layer { name: "a" type: Input top: "a" }
layer { name: "side" type: ReLU bottom: "a" top: "side" }
layer { name: "b" type: ReLU bottom: "a" top: "b" }
layer { name: "c" type: ReLU bottom: "side" }
layer { name: "d" type: ReLU }
remove "c"
""")
    # d read c by default; it must now read c's bottom explicitly
    assert wiring(spec)[-1] == ("d", ["side"], [])


def test_remove_unpaired_is_an_error():
    e = err("""\
layer { name: "d" type: Data top: "x" top: "y" }
layer { name: "r" type: ReLU bottom: "x" }
remove "d"
""")
    assert e.message == ("cannot remove 'd': layer 'r' reads its top 'x', and 'd' has 0 "
                         "bottom(s) for 2 top(s), which cannot be paired")
    assert at(e) == (3, 8) and e.hint == "remove or update 'r' first"
    # nobody reads an accuracy layer: removing it is fine
    spec = R("""\
layer { name: "acc" type: Accuracy bottom: "fc" bottom: "label" }
layer { name: "x" type: ReLU bottom: "fc" }
remove "acc"
""")
    assert names(spec) == ["x"]


def test_remove_all_same_named_layers():
    spec = R('layer { name: "d" phase: TRAIN }\nlayer { name: "d" phase: TEST }\n'
             'layer { name: "e" }\nremove "d"\n')
    assert names(spec) == ["e"]


def test_insert_after_chains_and_moves_readers():
    spec = R(NET + """\
insert after "conv1" {
  layer { name: "bn1" type: BatchNorm }
  layer { name: "scale1" type: Scale }
}
""")
    assert wiring(spec)[:5] == [
        ("conv1", ["data"], ["conv1"]),
        ("bn1", ["conv1"], ["bn1"]),
        ("scale1", ["bn1"], ["scale1"]),
        ("relu1", ["scale1"], ["scale1"]),
        ("norm1", ["scale1"], ["norm1"]),
    ]


def test_insert_in_place_needs_no_rewiring():
    spec = R(NET + 'insert after "relu1" { layer { name: "drop" type: Dropout top: "conv1" } }\n')
    assert wiring(spec)[2:4] == [("drop", ["conv1"], ["conv1"]), ("norm1", ["conv1"], ["norm1"])]


def test_insert_before():
    spec = R(NET + 'insert before "pool1" { layer { name: "pad" type: Pad } }\n')
    assert wiring(spec)[3:6] == [("pad", ["norm1"], ["pad"]), ("pool1", ["pad"], ["pool1"]),
                                 ("fc", ["pool1"], ["fc"])]


def test_insert_a_group_instance_and_repeat():
    spec = R(NET + """\
group bn() { layer { name: "n" type: BatchNorm bottom: $bottom } }
insert after "pool1" {
  layer { name: "b" type: bn }
  repeat 2 as i { layer { name: "r${i}" type: ReLU } }
}
""")
    assert wiring(spec)[4:] == [("b/n", ["pool1"], []), ("r0", ["b/n"], ["r0"]),
                                ("r1", ["r0"], ["r1"]), ("fc", ["r1"], ["fc"])]


def test_edits_look_through_instance_names():
    spec = R(TOWER + """\
layer { name: "t1" type: tower width: 8 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
insert after "t1/pool" { layer { name: "bn" type: BatchNorm } }
""")
    assert wiring(spec)[-2:] == [("bn", ["t1/pool"], ["bn"]), ("fc", ["bn"], [])]
    spec = R(TOWER + """\
layer { name: "t1" type: tower width: 8 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
remove "t1/pool"
""")
    assert wiring(spec)[-1] == ("fc", ["t1/conv"], [])


def test_imported_edits_do_not_pin_instance_outputs(tmp_path):
    lib = TOWER + """\
layer { name: "t1" type: tower bottom: "data" width: 16 }
layer { name: "fc" type: InnerProduct bottom: "t1" }
update "fc" { num_output: 10 }
"""
    spec = RF(tmp_path, {"lib.net": lib, "main.net":
                         'import "lib.net"\nlayer { name: "t1" type: Pooling bottom: "data" }\n'})
    assert wiring(spec) == [("t1", ["data"], []), ("fc", ["t1"], [])]


def test_edit_target_missing():
    e = err(NET + '\nreplace "norm2" { type: BatchNorm }\n')
    assert e.message == "replace: no layer named 'norm2'" and at(e) == (9, 9)
    assert e.hint == "did you mean 'norm1'?"
    e = err(NET + 'insert after "pool" { layer { name: "x" } }\n')
    assert e.message == "insert after: no layer named 'pool'" and at(e) == (8, 14)
    e = err(TOWER + 'layer { name: "t" type: tower width: 8 }\nremove "t"\n')
    assert "'t' is a group instance" in (e.hint or "") and "'t/conv'" in (e.hint or "")


def test_edits_on_group_and_repeat_layers_with_interpolated_target():
    spec = R(TOWER + """\
let which = 1
repeat 2 as i { layer { name: "t${i}" type: tower width: 8 } }
update "t${which}/conv" { num_output: 99 }
remove "t0/relu"
""")
    assert get(spec, "t1/conv").scalar("num_output") == 99
    assert "t0/relu" not in names(spec)


# --------------------------------------------------------------------------- Caffe files


CAFFE = Path(__file__).resolve().parents[2] / "shared" / "caffe" / "prototxt"


def test_caffe_files_resolve_unchanged():
    if not CAFFE.is_dir():
        pytest.skip("shared caffe reference data not present")
    for p in sorted(CAFFE.glob("*.prototxt")):
        f = upgrade(parse_file(p))
        spec = resolve(f)
        assert spec.items == f.items, p.name


# --------------------------------------------------------------------------- error fixtures


def _fixtures() -> list[Path]:
    out = sorted(FIXTURES.glob("resolve_*.net"))
    out += sorted(d / "main.net" for d in FIXTURES.glob("resolve_*") if d.is_dir())
    return out


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.parent.name
                         if p.name == "main.net" else p.stem)
def test_error_fixtures(path):
    first = path.read_text().splitlines()[0]
    m = re.match(r"# expect: (\d+):(\d+): (.*)", first)
    assert m, f"{path}: first line must be '# expect: line:col: message'"
    with pytest.raises(NetdslError) as ei:
        resolve(upgrade(parse_file(path)))
    e = ei.value
    assert (e.span.line, e.span.col) == (int(m[1]), int(m[2])), render(e)
    assert m[3] in e.message, render(e)
    assert f"{m[1]}:{m[2]}: error: " in render(e)
