"""Helpers for the resolve tests: resolving text or files, and reading the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from netdsl import syntax as s
from netdsl.caffe_compat import upgrade
from netdsl.diagnostics import NetdslError
from netdsl.parse import parse, parse_file
from netdsl.resolve import resolve


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


#: A group used by the group, import and edit tests.
TOWER = """\
group tower(width, k = $width // 8) {
  layer { name: "conv" type: Convolution bottom: $bottom num_output: $width kernel_size: $k }
  layer { name: "relu" type: ReLU bottom: "conv" top: "conv" }
  layer { name: "pool" type: Pooling bottom: "conv" }
}
input { name: "data" shape: [3, 8, 8] }
"""
