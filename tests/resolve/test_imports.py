"""Imports: the import tree, cycles, missing files, and merging an importer over what it imports."""

from __future__ import annotations

import pytest

from netdsl import syntax as s
from netdsl.diagnostics import NetdslError, Span
from netdsl.parse import parse, parse_file
from netdsl.resolve import default_loader, resolve
from tests.resolve.helpers import (
    RF,
    TOWER,
    at,
    err,
    get,
    layers,
    names,
    plain,
    top,
    wiring,
)

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
