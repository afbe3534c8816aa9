"""Variables and expressions: let, arithmetic, functions, fillers and ${} interpolation."""

from __future__ import annotations

import pytest

from netdsl import syntax as s
from tests.resolve.helpers import (
    R,
    at,
    err,
    get,
    is_literal,
    layers,
    names,
    plain,
    top,
    vals,
)


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
