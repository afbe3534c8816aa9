"""The user's files: only regular files are read, within size limits, and never quoted
from outside the spec's folder tree; output paths are checked before any work and
written whole or not at all."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from netdsl.cli import main
from netdsl.diagnostics import DataError
from netdsl.files import checked_output, read_bytes, read_text, writable_folder, write_output

NET = 'input { name: "data" shape: [1, 4, 4] }\n' \
      'layer { name: "fc" type: InnerProduct bottom: "data" num_output: 2 }\n'
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def shapes(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = main(["shapes", str(path), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "spec.net"
    os.mkfifo(fifo)
    done: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: done.append(shapes(fifo, capsys)), daemon=True)
    t.start()
    t.join(20)
    assert done, "reading a FIFO hung"
    status, err = done[0]
    assert status == 1 and "is a FIFO (named pipe); netdsl reads only regular files" in err


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = shapes(Path("/dev/zero"), capsys)
    assert status == 1 and "/dev/zero is a device" in err
    with pytest.raises(DataError, match="is a device"):
        read_bytes("/dev/zero", "weights file", "weights")


def test_size_limits_and_how_to_raise_them(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.net"
    big.write_text(NET + "#" * 2000 + "\n")
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "1000")
    with pytest.raises(DataError) as e:
        read_text(big, "spec file")
    assert "over the limit of 1000 bytes" in e.value.message
    assert e.value.hint is not None and "NETDSL_MAX_SPEC_BYTES" in e.value.hint
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "1e6")
    assert read_text(big, "spec file").startswith("input")
    monkeypatch.setenv("NETDSL_MAX_SPEC_BYTES", "lots")
    with pytest.raises(DataError, match="is not a number of bytes"):
        read_text(big, "spec file")


@pytest.mark.parametrize(("data", "where", "what"), [
    (b'name: "a"\nlayer {\x00 }\n', (2, 8), "a NUL byte"),
    (b'name: "caf\xe9"\n', (1, 11), "byte 0xe9, not UTF-8"),
])
def test_nul_and_non_utf8_bytes_have_a_position(tmp_path: Path, data: bytes,
                                                where: tuple[int, int], what: str) -> None:
    path = tmp_path / "bad.net"
    path.write_bytes(data)
    with pytest.raises(DataError) as e:
        read_text(path, "spec file")
    assert (e.value.span.line, e.value.span.col) == where
    assert what in e.value.message


def test_an_import_from_outside_is_named_never_quoted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "shared.net").write_text("let width = 2\n")
    spec = tmp_path / "project" / "main.net"
    spec.parent.mkdir()
    spec.write_text(f'import "{secret}"\n' + NET)
    status, err = shapes(spec, capsys)
    assert status == 1 and "outside this file's folder and is not a valid spec (line 1)" in err
    assert "root:x" not in err and "/bin/bash" not in err

    spec.write_text('import "../shared.net"\n' + NET)
    assert main(["expand", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"# imported from outside {spec.parent}: "
                                   f"{tmp_path / 'shared.net'}")


def test_imports_are_bounded_in_depth_and_number(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netdsl.resolve.imports import MAX_IMPORT_DEPTH

    for k in range(MAX_IMPORT_DEPTH + 2):
        (tmp_path / f"f{k}.net").write_text(f'import "f{k + 1}.net"\n')
    (tmp_path / f"f{MAX_IMPORT_DEPTH + 2}.net").write_text("let x = 1\n")
    spec = tmp_path / "main.net"
    spec.write_text('import "f0.net"\n' + NET)
    status, err = shapes(spec, capsys)
    assert status == 1 and f"imports nested more than {MAX_IMPORT_DEPTH} deep" in err

    # a diamond ten levels deep: 2^10 paths to the last file, each counted
    for k in range(10):
        (tmp_path / f"d{k}a.net").write_text(f'import "d{k + 1}a.net"\nimport "d{k + 1}b.net"\n')
        (tmp_path / f"d{k}b.net").write_text(f'import "d{k + 1}a.net"\nimport "d{k + 1}b.net"\n')
    for end in ("d10a.net", "d10b.net"):
        (tmp_path / end).write_text("let y = 1\n")
    spec.write_text('import "d0a.net"\n' + NET)
    status, err = shapes(spec, capsys)
    assert status == 1 and "more than 1000 imports in one spec" in err


def test_output_paths_are_checked_before_the_work(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="it is a folder"):
        checked_output(tmp_path, "the drawing")
    with pytest.raises(DataError, match="does not exist"):
        checked_output(tmp_path / "nope" / "x.net", "the converted spec")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        checked_output(tmp_path / "file" / "x.net", "the converted spec")
    with pytest.raises(DataError, match="is a file, not a folder"):
        writable_folder(tmp_path / "file", "snapshots")
    assert writable_folder(tmp_path / "a" / "b", "snapshots").is_dir()


@pytest.mark.skipif(ROOT, reason="root writes in read-only folders")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(DataError, match="permission denied"):
            checked_output(folder / "x.net", "the converted spec")
        with pytest.raises(DataError, match="cannot write snapshots in"):
            writable_folder(folder, "snapshots")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_written_whole_with_the_users_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = write_output(tmp_path / "out.net", "name: 1\n", "the converted spec")
    finally:
        os.umask(old)
    assert path.read_text() == "name: 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.net"]  # no temporary left


def test_convert_to_a_missing_folder_fails_before_converting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "n.net"
    spec.write_text(NET)
    assert main(["convert", str(spec), "-o", str(tmp_path / "no" / "n.prototxt")]) == 1
    assert "the folder" in capsys.readouterr().err
    assert main(["convert", str(spec), "-o", str(tmp_path / "n.prototxt")]) == 0
    assert "layer {" in (tmp_path / "n.prototxt").read_text()


def test_a_bad_byte_quotes_the_file_as_it_is_now(tmp_path: Path) -> None:
    """Loading a spec, editing it and loading it again from the API: the error about a
    NUL byte quotes the new text, not the line the file had before (found by fuzzing)."""
    import netdsl
    from netdsl.diagnostics import render

    spec = tmp_path / "s.net"
    spec.write_text('input { name: "data" shape: [1, 4, 4] }\nlayer { name: "a" type: ReLU }\n')
    netdsl.load(spec)
    spec.write_bytes(b'input { name: "data" shape: [1, 4, 4] }\n' + b"x: 1 " * 2000 + b"\0\n")
    with pytest.raises(DataError) as e:
        netdsl.load(spec)
    text = render(e.value)
    assert "ReLU" not in text and "x: 1" in text and len(text) < 1000
