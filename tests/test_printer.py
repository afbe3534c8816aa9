"""Stage 6: parse(print_spec(x)) == x ignoring spans, on Caffe's files and random specs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdsl import syntax as s
from netdsl.caffe_compat import upgrade
from netdsl.diagnostics import Span
from netdsl.parse import parse, parse_file
from netdsl.printer import print_file, print_spec
from netdsl.resolve import resolve

CAFFE = Path(__file__).resolve().parents[2] / "shared" / "caffe" / "prototxt"
SP = Span("<gen>")


def strip(x):
    """A syntax tree as nested tuples without spans or notes, for comparison."""
    if isinstance(x, tuple | list):
        return tuple(strip(i) for i in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        kept = (f.name for f in dataclasses.fields(x)
                if f.name not in ("span", "key_span", "notes"))
        return (type(x).__name__,) + tuple(strip(getattr(x, n)) for n in kept)
    if isinstance(x, float):
        return ("float", repr(x))  # -0.0 and 0.0 differ in text; keep them apart
    return x


def roundtrip(spec: s.Spec) -> None:
    text = print_spec(spec)
    back = parse(text, "<printed>")
    assert strip(back.items) == strip(spec.items), text
    assert print_spec(s.Spec("<printed>", back.items)) == text  # printing is stable


# --------------------------------------------------------------------------- Caffe files


def caffe_files() -> list[Path]:
    return sorted(CAFFE.glob("*.prototxt")) if CAFFE.is_dir() else []


@pytest.mark.parametrize("path", caffe_files(), ids=lambda p: p.stem)
def test_caffe_files_round_trip(path):
    roundtrip(resolve(upgrade(parse_file(path))))


def test_caffe_folder_present_or_skipped():
    if not caffe_files():
        pytest.skip("shared caffe reference data not present")
    assert len(caffe_files()) >= 20


# --------------------------------------------------------------------------- random specs

KEYWORDS = ["group", "import", "let", "repeat", "replace", "update", "remove", "insert", "as",
            "after", "before", "true", "false", "layer"]
_FIRST = "abcxyzABCXYZ_"
_REST = _FIRST + "0129."
names = st.one_of(st.builds(str.__add__, st.sampled_from(_FIRST), st.text(_REST, max_size=8)),
                  st.sampled_from(KEYWORDS))
scalars = st.one_of(
    st.integers(-(10**15), 10**15).map(lambda v: s.Scalar(v, "int", SP)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: s.Scalar(v, "float", SP)),
    st.text(max_size=12).map(lambda v: s.Scalar(v, "string", SP)),
    names.map(lambda v: s.Scalar(v, "word", SP)),
)


def _block(fields: list[s.Field]) -> s.Block:
    return s.Block(tuple(fields), SP)


def _extend(inner):
    field = st.builds(lambda k, v: s.Field(k, v, SP, SP), names, inner)
    return st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: s.ListValue(tuple(xs), SP)),
        st.lists(field, max_size=4).map(_block),
    )


values = st.recursive(scalars, _extend, max_leaves=15)
fields = st.builds(lambda k, v: s.Field(k, v, SP, SP), names, values)
layer_fields = st.lists(fields, max_size=6).map(lambda fs: s.Field("layer", _block(fs), SP, SP))
specs = st.lists(st.one_of(fields, layer_fields), max_size=8).map(
    lambda fs: s.Spec("<gen>", tuple(fs)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_random_literal_specs_round_trip(spec):
    roundtrip(spec)


# --------------------------------------------------------------------------- layout


def test_layout():
    spec = resolve(parse("""\
name: "Net"
input { name: "data" shape: [3, 227, 227] }
layer { name: "conv1" type: Convolution bottom: "data" num_output: 96 lr: 1e-05
        weight_filler: gaussian(0.01) param { lr_mult: 1 decay_mult: 1 } note: "a \\"b\\"\\n" }
solver { base_lr: 0.01 lr_policy: "step" gamma: 0.1 stepsize: 100000 momentum: 0.9
         weight_decay: 0.0005 max_iter: 450000 snapshot_prefix: "models/alexnet" }
""", "t.net"))
    assert print_spec(spec) == """\
name: "Net"
input { name: "data" shape: [3, 227, 227] }

layer {
  name: "conv1"
  type: Convolution
  bottom: "data"
  num_output: 96
  lr: 1e-05
  weight_filler { type: "gaussian" std: 0.01 }
  param { lr_mult: 1 decay_mult: 1 }
  note: "a \\"b\\"\\n"
}

solver {
  base_lr: 0.01
  lr_policy: "step"
  gamma: 0.1
  stepsize: 100000
  momentum: 0.9
  weight_decay: 0.0005
  max_iter: 450000
  snapshot_prefix: "models/alexnet"
}
"""


def test_scalars():
    def one(v: s.Value) -> str:
        return print_spec(s.Spec("x", (s.Field("k", v, SP, SP),)))

    assert one(s.Scalar(0.1, "float", SP)) == "k: 0.1\n"
    assert one(s.Scalar(1e16, "float", SP)) == "k: 1e+16\n"
    assert one(s.Scalar(-2, "int", SP)) == "k: -2\n"
    assert one(s.Scalar(2.0, "float", SP)) == "k: 2.0\n"
    assert one(s.Scalar("a\tb\\", "string", SP)) == 'k: "a\\tb\\\\"\n'
    assert one(s.Scalar("MAX", "word", SP)) == "k: MAX\n"
    assert one(s.Scalar("not a word", "word", SP)) == 'k: "not a word"\n'
    assert one(s.ListValue((), SP)) == "k: []\n"
    assert one(s.Block((), SP)) == "k {}\n"


def test_empty_spec():
    assert print_spec(s.Spec("x", ())) == ""


# --------------------------------------------------------------------------- whole files


FILE = """\
import "common/fillers.net"
name: "demo"
let w = 2 * (3 + $base) - -1
let s = "conv${i + 1}"
let n = -(1 + 2) * 3 // 4 % 5
group tower(dev, width = $w / 2) {
  repeat 3 as i {
    layer { name: "c${i}" type: Convolution num_output: $width weight_filler: gaussian(0.01, 0) }
  }
  layer { name: "relu" type: ReLU devices: [$dev] }
}
repeat $n { layer { name: "x" type: tower(1) } }
layer { name: "t" type: tower dev: "gpu:1" bottom: "data" params: [{ a: 1 }, { b: [1, 2] }] }
replace "norm1" { type: BatchNorm }
update "conv1" { num_output: 48 }
remove "drop6"
insert after "conv1" { layer { name: "bn" type: BatchNorm } }
insert before "fc8" { layer { name: "d" type: Dropout } }
solver { let k = 3 repeat $k as j { stepvalue: 100 * $j } }
"""


def test_print_file_round_trips():
    f = parse(FILE, "demo.net")
    text = print_file(f)
    back = parse(text, "printed.net")
    assert strip(back.items) == strip(f.items), text
    assert print_file(back) == text


def test_print_file_parenthesises_only_where_needed():
    f = parse("let a = (1 - 2) - (3 - 4) * -$x / (5 * 6)\nlet b = -(-$y)\nlet c = f((1 + 2))\n",
              "t.net")
    assert print_file(f) == ("let a = 1 - 2 - (3 - 4) * -$x / (5 * 6)\nlet b = --$y\n"
                             "let c = f(1 + 2)\n")
