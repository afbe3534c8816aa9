"""The whole chain: Caffe files pass through unchanged; the resolve error fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netdsl.caffe_compat import upgrade
from netdsl.diagnostics import NetdslError, render
from netdsl.parse import parse_file
from netdsl.resolve import resolve
from tests.shared import SHARED_CAFFE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "errors"


# --------------------------------------------------------------------------- Caffe files


CAFFE = SHARED_CAFFE / "prototxt"


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
