"""Every user error is `file:line:col: error: message` + the line + a caret, exit 1.

One fixture file per error in tests/fixtures/errors/; its first line says what to expect:
``# expect: LINE:COL: message substring``. A fixture that needs several files is a folder
whose entry point is ``main.net``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.diagnostics import QUOTE_WIDTH, Span, SpecError, collect_warnings, render, suggest, warn

FIXTURES = Path(__file__).parent / "fixtures" / "errors"


def _fixtures() -> list[Path]:
    out = []
    for p in sorted(FIXTURES.iterdir()):
        if p.is_dir():
            out.append(p / "main.net")
        elif p.suffix == ".net":
            out.append(p)
    return out


def _expectation(path: Path) -> tuple[str, str]:
    first = path.read_text().splitlines()[0]
    m = re.match(r"#\s*expect:\s*(\d+:\d+):\s*(.*)$", first)
    assert m, f"{path}: first line must be '# expect: LINE:COL: message'"
    return m.group(1), m.group(2).strip()


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.parent.name if p.name == "main.net"
                         else p.stem)
def test_error_fixture(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where, message = _expectation(path)
    status = main(["shapes", str(path)])
    err = capsys.readouterr().err
    assert status == 1, err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:{where}: error: "), err
    assert message in first, err
    # the offending line is quoted with a caret under the column
    line_no, col = map(int, where.split(":"))
    source = path.read_text().splitlines()[line_no - 1]
    lines = err.splitlines()
    quote = next(i for i, ln in enumerate(lines) if ln.startswith(f"{line_no:>5} | "))
    shown = lines[quote][len(f"{line_no:>5} | "):]
    caret = lines[quote + 1].index("^") - lines[quote + 1].index("|") - 2
    if len(source) <= QUOTE_WIDTH:
        assert shown == source and caret == col - 1
    else:  # a window around the caret, cut with ellipses, pointing at the same character
        assert shown.strip("…") in source and len(shown) <= QUOTE_WIDTH + 2
        first = source.index(shown.strip("…")) - (1 if shown.startswith("…") else 0)
        assert first + caret == col - 1


def test_render_exact_text(tmp_path: Path) -> None:
    src = tmp_path / "a.net"
    src.write_text('layer {\n        kernal_size: 11  stride: 4\n}\n')
    e = SpecError("unknown field 'kernal_size' for Convolution",
                  Span(str(src), 2, 9, 2, 20), "did you mean 'kernel_size'?")
    assert render(e) == (
        f"{src}:2:9: error: unknown field 'kernal_size' for Convolution\n"
        "    2 |         kernal_size: 11  stride: 4\n"
        "      |         ^~~~~~~~~~~\n"
        "  hint: did you mean 'kernel_size'?"
    )


def test_hints_suggest_near_names(capsys: pytest.CaptureFixture[str]) -> None:
    main(["shapes", str(FIXTURES / "unknown_field.net")])
    assert "hint: did you mean 'kernel_size'?" in capsys.readouterr().err
    main(["shapes", str(FIXTURES / "unknown_layer_type.net")])
    assert "did you mean 'Convolution'" in capsys.readouterr().err
    main(["shapes", str(FIXTURES / "missing_bottom.net")])
    assert "did you mean 'conv1'" in capsys.readouterr().err


def test_suggest_is_case_insensitive() -> None:
    assert suggest("relu", ["ReLU", "PReLU", "Pooling"])[0] == "ReLU"


def test_missing_and_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shapes", str(tmp_path / "nope.net")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope.net'}: error: no such spec file" in err
    assert main(["shapes", str(tmp_path)]) == 1
    assert "is a folder, not a file" in capsys.readouterr().err
    binary = tmp_path / "bin.net"
    binary.write_bytes(b"name: 1\n  \xff\xfe\x00garbage")
    assert main(["shapes", str(binary)]) == 1
    assert f"{binary}:2:3: error: spec file has byte 0xff, not UTF-8 at line 2, column 3" \
        in capsys.readouterr().err


def test_warnings_render_like_errors_and_go_to_the_netdsl_logger(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "a.net"
    src.write_text('layer {\n  pool: MAX kernel_size: 2 stride: 2\n}\n')
    with caplog.at_level(logging.WARNING, logger="netdsl"), collect_warnings() as ws:
        w = warn("Pooling 'p': kernel 2 is larger than the padded input 1",
                 Span(str(src), 2, 13, 2, 27), "give the real size: --input NAME=C,H,W",
                 [("expanded from repeat", Span(str(src), 1, 1))])
    assert ws == [w]
    text = (
        f"{src}:2:13: warning: Pooling 'p': kernel 2 is larger than the padded input 1\n"
        "    2 |   pool: MAX kernel_size: 2 stride: 2\n"
        "      |             ^~~~~~~~~~~~~~\n"
        f"  note: expanded from repeat ({src}:1:1)\n"
        "  hint: give the real size: --input NAME=C,H,W"
    )
    assert render(w) == text
    assert str(w) == f"{src}:2:13: warning: Pooling 'p': kernel 2 is larger than the padded input 1"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("netdsl", logging.WARNING, text)]


def test_warnings_reach_stderr_and_keep_exit_0(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "w.net"
    src.write_text('input { name: "data" shape: [3, 1, 1] }\n'
                   'layer { name: "pool" type: Pooling bottom: "data" kernel_size: 2 stride: 2 }\n')
    assert main(["shapes", str(src), "--format", "json"]) == 0
    out = capsys.readouterr()
    assert out.err.startswith(f"{src}:2:51: warning: Pooling 'pool': kernel 2 is larger than "
                              "the padded input 1; Caffe computes side 1")
    assert '"top_shapes"' in out.out and "warning" not in out.out


def test_long_error_lists_stay_readable(tmp_path: Path) -> None:
    """A group used many times repeats its body's errors: each is shown once, with how
    often it repeats, and at most MAX_RENDERED different errors are shown in full."""
    from netdsl.diagnostics import MAX_RENDERED, ErrorList

    src = tmp_path / "a.net"
    src.write_text("\n".join(f"line {i}" for i in range(1, 40)) + "\n")
    same = [SpecError("unknown layer type 'conv'", Span(str(src), 3, 1, 3, 5))] * 9
    other = [SpecError(f"error {i}", Span(str(src), i, 1, i, 2)) for i in range(5, 30)]
    text = render(ErrorList([*same, *other]))
    assert text.count("unknown layer type 'conv'") == 1
    assert "the same error 8 more times where this is expanded" in text
    assert text.count(": error: ") == MAX_RENDERED
    assert text.endswith(f"... and {len(other) + 1 - MAX_RENDERED} more errors")


def test_long_words_in_messages_are_cut(tmp_path: Path) -> None:
    """A name or number the user wrote, 10,000 characters long, is shown by its head and
    length in the message, the notes and the hint; a path is shown whole."""
    long = "a" * 10_000
    path = "/" + "/".join(["folder"] * 20) + "/spec.net"
    e = SpecError(f"remove: no layer named '{long}'", Span(path, 0, 0),
                  f"did you mean '{long}'?")
    text = render(e)
    assert "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa... (10,000 characters)'" in text
    assert len(text) < 400 and text.startswith(path)
