"""Groups and repeat: instances, name prefixing, wiring, arguments, runaway expansion."""

from __future__ import annotations

import importlib
import time

import pytest

from netdsl.diagnostics import render
from tests.resolve.helpers import (
    TOWER,
    R,
    at,
    err,
    get,
    layers,
    names,
    plain,
    top,
    vals,
    wiring,
)

expressions_mod = importlib.import_module("netdsl.resolve.expressions")
groups_mod = importlib.import_module("netdsl.resolve.groups")


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
    assert groups_mod.MAX_LAYERS == 100_000
    monkeypatch.setattr(groups_mod, "MAX_LAYERS", 3000)
    e = err("""\
group g() { repeat 1000 { layer { name: "${name}_x" type: ReLU } } }
repeat 1000 as i { layer { name: "i${i}" type: g bottom: "d" } }
""")
    assert e.message == "runaway expansion: more than 3000 layers"
    assert at(e) == (1, 27)
    assert e.notes[0][0] == "expanded from iteration 0 of repeat"


def test_runaway_exponential_groups(monkeypatch):
    monkeypatch.setattr(groups_mod, "MAX_LAYERS", 3000)
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
    monkeypatch.setattr(expressions_mod, "MAX_ITERATIONS", 5000)
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
