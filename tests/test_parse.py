"""Parsing: protobuf text format, netdsl's additions, spans, syntax errors."""

from __future__ import annotations

import pytest

from netdsl import syntax as s
from netdsl.diagnostics import ParseError, render
from netdsl.parse import parse, parse_file
from tests.shared import caffe_params


def one_field(text: str) -> s.Field:
    f = parse(text, "t.net")
    assert len(f.items) == 1
    item = f.items[0]
    assert isinstance(item, s.Field)
    return item


@pytest.mark.parametrize(
    "text, value, kind",
    [
        ("a: 1", 1, "int"),
        ("a: -3", -3, "int"),
        ("a: 1e-4", 1e-4, "float"),
        ("a: 5E+2", 500.0, "float"),
        ("a: .5", 0.5, "float"),
        ("a: 2.", 2.0, "float"),
        ("a: 0.5f", 0.5, "float"),
        ('a: "x y"', "x y", "string"),
        ("a: 'single'", "single", "string"),
        (r'a: "tab\there \"q\""', 'tab\there "q"', "string"),
        ("a: MAX", "MAX", "word"),
        ("a: true", "true", "word"),
    ],
)
def test_scalars(text: str, value: object, kind: str) -> None:
    f = one_field(text)
    assert isinstance(f.value, s.Scalar)
    assert f.value.value == value
    assert f.value.kind == kind


def test_blocks_lists_comments_and_separators() -> None:
    f = parse(
        """# a comment
        layer { name: "c"  # trailing comment
                shape: [1, 2, 3,]; dim: 4, dim: 5
                weight_filler: { type: "xavier" } }
        layer{name:"d"}
        """,
        "t.net",
    )
    assert [i.key for i in f.items] == ["layer", "layer"]
    body = f.items[0].value
    assert isinstance(body, s.Block)
    assert [i.key for i in body.items] == ["name", "shape", "dim", "dim", "weight_filler"]
    shape = body.first("shape").value
    assert [v.value for v in shape.items] == [1, 2, 3]
    assert isinstance(body.first("weight_filler").value, s.Block)


def test_spans_point_at_tokens() -> None:
    f = parse('layer {\n  name: "conv1"\n  kernel_size: 11\n}\n', "t.net")
    layer = f.items[0]
    assert (layer.span.line, layer.span.col) == (1, 1)
    ks = layer.value.first("kernel_size")
    assert (ks.key_span.line, ks.key_span.col, ks.key_span.end_col) == (3, 3, 14)
    assert (ks.value.span.line, ks.value.span.col) == (3, 16)


def test_keywords_are_still_field_names() -> None:
    f = parse("layer { group: 2 as: 1 import: 3 }", "t.net")
    assert [i.key for i in f.items[0].value.items] == ["group", "as", "import"]


#: Every statement keyword of the grammar (and the two words of ``insert``).
KEYWORDS = ["group", "import", "let", "repeat", "replace", "update", "remove", "insert", "as",
            "after", "before"]


@pytest.mark.parametrize("name", ["aspect_ratio", "assign", "importance", "letter", "grouping",
                                  "updates", "removed_x", "inserted", "repeated", "replaced",
                                  "as_", "before2", "afterwards", "group.size"])
def test_a_name_that_starts_with_a_keyword_is_one_name(name: str) -> None:
    """Keywords are whole words: SSD's ``aspect_ratio`` is not ``as`` + ``pect_ratio``."""
    text = f"layer {{\n  {name}: 2\n  {name} {{ a: 1 }}\n}}\nx: {name}\n"
    f = parse(text, "t.net")
    layer, value = f.items
    assert [i.key for i in layer.value.items] == [name, name]
    key = layer.value.items[0].key_span
    assert (key.line, key.col, key.end_col) == (2, 3, 3 + len(name))
    assert isinstance(value.value, s.Scalar) and value.value.kind == "word"
    assert value.value.value == name


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_each_keyword_is_a_field_name_where_a_field_goes(keyword: str) -> None:
    f = parse(f"{keyword}: 3\nlayer {{ {keyword}: 2 {keyword} {{ b: 1 }} }}\n", "t.net")
    top, layer = f.items
    assert isinstance(top, s.Field) and top.key == keyword and top.value.value == 3
    assert [i.key for i in layer.value.items] == [keyword, keyword]
    assert isinstance(layer.value.items[1].value, s.Block)


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_each_keyword_is_a_value_and_a_variable_name(keyword: str) -> None:
    f = parse(f"let {keyword} = 1\nmode: {keyword}\n", "t.net")
    let, field = f.items
    assert isinstance(let, s.Let) and let.name == keyword
    assert field.value.value == keyword


def test_keywords_still_start_statements_next_to_keyword_like_names() -> None:
    f = parse('repeat 2 as aspect { layer { aspect_ratio: 2 } }\n'
              'insert after "conv1" { layer { inserted: 1 } }\n'
              'group grouping(as_, importance = 1) { layer { letter: $as_ } }\n', "t.net")
    rep, ins, grp = f.items
    assert isinstance(rep, s.Repeat) and rep.var == "aspect"
    assert isinstance(ins, s.Insert) and ins.where == "after" and ins.target == "conv1"
    assert isinstance(grp, s.GroupDef) and grp.name == "grouping"
    assert [p.name for p in grp.params] == ["as_", "importance"]


def test_a_keyword_prefix_is_not_a_keyword_in_a_statement() -> None:
    """Where only ``as`` may come, ``aspect`` is reported whole, not split after 'as'."""
    with pytest.raises(ParseError) as e:
        parse("repeat 3 aspect i { }", "bad.net")
    assert e.value.message == "unexpected 'aspect', expected 'as' or '{'"
    assert (e.value.span.col, e.value.span.end_col) == (10, 16)
    with pytest.raises(ParseError) as e:
        parse('insert afterwards "x" { }', "bad.net")
    assert e.value.message.startswith("unexpected 'afterwards', expected")
    assert "'after', 'before'" in e.value.message


def test_reuse_statements() -> None:
    f = parse(
        """import "base.net"
        let w = 2 * (3 + 1) // 3
        group tower(dev, width = 1) { layer { name: "a" num_output: $width * 2 } }
        repeat 3 as i { layer { name: "c${i}" } }
        replace "norm1" { type: BatchNorm }
        update "conv1" { num_output: 48 }
        remove "drop6"
        insert after "conv1" { layer { name: "bn" } }
        """,
        "t.net",
    )
    kinds = [type(i).__name__ for i in f.items]
    assert kinds == ["Import", "Let", "GroupDef", "Repeat", "Replace", "Update", "Remove",
                     "Insert"]
    let = f.items[1]
    assert isinstance(let.value, s.BinOp) and let.value.op == "//"
    group = f.items[2]
    assert [p.name for p in group.params] == ["dev", "width"]
    assert group.params[1].default.value == 1
    assert f.items[3].var == "i"
    assert f.items[7].where == "after"


@pytest.mark.parametrize(
    "text, line, col, message",
    [
        ("layer {\n  name: \"x\"\n", 2, 12, "unexpected end of file"),
        ("layer { name \"x\" }", 1, 14, "unexpected '\"x\"'"),
        ("layer { name: }", 1, 15, "unexpected '}'"),
        ("a: 1\n}", 2, 1, "unexpected '}'"),
        ("a: \"open\nb: 1", 1, 4, "unexpected character"),
        ("a: 1 @", 1, 6, "unexpected character '@'"),
    ],
)
def test_syntax_errors_have_positions(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(text, "bad.net")
    assert (e.value.span.line, e.value.span.col) == (line, col), render(e.value)
    assert message in e.value.message
    assert render(e.value).startswith(f"bad.net:{line}:{col}: error:")


def test_missing_file_is_a_diagnostic(tmp_path) -> None:
    from netdsl.diagnostics import DataError

    with pytest.raises(DataError) as e:
        parse_file(tmp_path / "nope.net")
    assert "no such spec file" in e.value.message


@pytest.mark.parametrize("path", caffe_params("nets") + caffe_params("solvers"))
def test_every_shared_prototxt_parses(path) -> None:
    f = parse_file(path)
    assert f.items


def test_parsing_is_reentrant_across_threads() -> None:
    """Spans name the file each thread parses, however the parses interleave."""
    from concurrent.futures import ThreadPoolExecutor

    texts = {f"f{i}.net": "layer { name: \"a\" }\n" * 1500 for i in range(8)}

    def one(path: str) -> set[str]:
        file = parse(texts[path], path)
        return {file.path, file.span.path} | {item.span.path for item in file.items}

    with ThreadPoolExecutor(8) as pool:
        for path, seen in zip(texts, pool.map(one, texts), strict=True):
            assert seen == {path}


def test_a_huge_unexpected_token_is_quoted_short() -> None:
    """The message names a long token by its head and length (found by fuzzing)."""
    with pytest.raises(ParseError) as e:
        parse("x: 1 " + "9" * 300 + "\n", "t.net")
    first = render(e.value).splitlines()[0]
    assert "unexpected '9999" in first and "... (300 characters)'" in first and len(first) < 150
