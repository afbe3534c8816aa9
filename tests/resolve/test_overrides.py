"""--set overrides: name=value replaces a let, a.b=value sets a field."""

from __future__ import annotations

from netdsl.diagnostics import render
from tests.resolve.helpers import (
    R,
    at,
    err,
    get,
    top,
)


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
