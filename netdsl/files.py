"""The user's files, read and written with care: only regular files are read, and only up
to a size limit (a FIFO, ``/dev/zero`` or a folder is refused without being opened for
long); an output path is checked before the work that fills it, and written whole or not
at all. Every problem is a :class:`DataError` naming the path.

The limits are generous defaults; ``NETDSL_MAX_<KIND>_BYTES`` (``SPEC``, ``WEIGHTS``,
``IMAGE``, ``DATA``) raises one, e.g. ``NETDSL_MAX_WEIGHTS_BYTES=20e9``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .diagnostics import DataError, Span, remember_source

__all__ = ["LIMITS", "checked_output", "limit", "read_bytes", "read_text", "writable_folder",
           "write_output"]

#: Default byte limits by kind of file.
LIMITS: dict[str, int] = {
    "spec": 16 << 20,  # a spec, prototxt or import: 16 MiB (AlexNet's is 3 KB)
    "weights": 16 << 30,  # a caffemodel, safetensors or snapshot: 16 GiB
    "image": 256 << 20,  # one image file: 256 MiB
    "data": 1 << 30,  # a list file, mean file, infogain matrix: 1 GiB
}


def limit(kind: str) -> int:
    """The byte limit for ``kind``: ``NETDSL_MAX_<KIND>_BYTES`` if set, else the default."""
    env = f"NETDSL_MAX_{kind.upper()}_BYTES"
    text = os.environ.get(env)
    if text:
        try:
            return int(float(text))
        except ValueError:
            raise DataError(f"{env}={text!r} is not a number of bytes", None,
                            f"e.g. {env}={LIMITS[kind] * 2}") from None
    return LIMITS[kind]


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path: str | os.PathLike[str], what: str, kind: str = "data") -> bytes:
    """The bytes of a regular file of at most :func:`limit` (``kind``) bytes."""
    p = Path(path)
    span = Span(str(p))
    cap = limit(kind)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise DataError(f"no such {what}: {p}", span, "check the path") from None
    except OSError as e:
        raise DataError(f"cannot read {what} {p}: {e.strerror or e}", span) from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{what} {p} is a folder, not a file", span)
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what} {p} is {_kind_of(st.st_mode)}; netdsl reads only regular "
                        "files", span)
    if st.st_size > cap:
        raise DataError(f"{what} {p} is {_size(st.st_size)}, over the limit of {_size(cap)}",
                        span, f"raise it with NETDSL_MAX_{kind.upper()}_BYTES if it is right")
    try:
        # O_NONBLOCK: if the path became a FIFO since the check, opening must not wait
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DataError(f"cannot read {what} {p}: {e.strerror or e}", span) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DataError(f"{what} {p} changed while being opened", span)
        data = f.read(cap + 1)
    if len(data) > cap:
        raise DataError(f"{what} {p} is over the limit of {_size(cap)}", span,
                        f"raise it with NETDSL_MAX_{kind.upper()}_BYTES if it is right")
    return data


def read_text(path: str | os.PathLike[str], what: str, kind: str = "spec") -> str:
    """A regular file's text, which must be UTF-8 without NUL bytes; a bad byte is
    reported at its line and column."""
    data = read_bytes(path, what, kind)
    bad = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = e.start if bad < 0 else min(bad, e.start)
        text = ""
    if bad >= 0:
        before = data[:bad]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        what_byte = "a NUL byte" if data[bad] == 0 else f"byte 0x{data[bad]:02x}, not UTF-8"
        # quote this text, not an older one of the same path (the API may load it again)
        remember_source(str(path), data.decode("utf-8", "replace").replace("\0", "\ufffd"))
        raise DataError(f"{what} has {what_byte} at line {line}, column {col}",
                        Span(str(path), line, col, line, col + 1),
                        "a spec is UTF-8 text; is this the file you meant?")
    return text


def checked_output(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if a file can be written there (checked before the work that fills it): its
    folder exists and is writable, and the path is not a folder or a special file."""
    p = Path(path)
    span = Span(str(p))
    folder = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise DataError(f"cannot write {what} to {p}: it is a folder", span,
                        "give a file name inside it")
    if p.exists() and not p.is_file():
        raise DataError(f"cannot write {what} to {p}: it is {_kind_of(os.stat(p).st_mode)}",
                        span)
    if not folder.exists():
        raise DataError(f"cannot write {what} to {p}: the folder {folder} does not exist",
                        span, f"create it first: mkdir -p {folder}")
    if not folder.is_dir():
        raise DataError(f"cannot write {what} to {p}: {folder} is a file, not a folder", span)
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise DataError(f"cannot write {what} to {p}: permission denied (read-only?)", span)
    return p


def writable_folder(path: str | os.PathLike[str], what: str) -> Path:
    """A folder that files can be written in: made if missing, then tried with a
    temporary file (which finds read-only file systems and full disks too)."""
    p = Path(path) if str(path) else Path(".")
    span = Span(str(p))
    if p.exists() and not p.is_dir():
        raise DataError(f"cannot write {what} in {p}: it is a file, not a folder", span,
                        "give a folder, or remove the file")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise DataError(f"cannot write {what} in {p}: {why}", span,
                        "choose another folder" if e.errno != errno.ENOSPC else None) from None
    return p


def write_output(path: str | os.PathLike[str], data: bytes | str, what: str) -> Path:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed into
    place), with the user's umask; a full disk or a read-only folder is a DataError."""
    p = checked_output(path, what)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise DataError(f"cannot write {what} to {p}: {why}", Span(str(p))) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return p
