"""Training snapshots that survive crashes and refuse to load when damaged.

A snapshot at iteration N is two safetensors files next to each other:

* ``<prefix>_iter_<N>.safetensors``: the net's weights (Caffe layout, as
  :func:`netdsl.weights.save_weights` writes them), usable on their own.
* ``<prefix>_iter_<N>.solverstate.safetensors``: the solver's tensors (momentum
  history, RNG state tensors...) plus, in the safetensors metadata, the JSON of the
  non-tensor state, the net name, the iteration, the sha256 of the weights file and a
  sha256 over this file's own tensors and metadata.

Each file is written to a temporary file, fsynced and renamed into place. The solver
state goes last, so its presence marks a complete snapshot: a crash between the two
writes leaves an orphan weights file that :func:`find_latest` ignores, and the previous
snapshot stays intact. :func:`read_snapshot` checks both checksums before returning
anything, so a corrupt or mismatched pair is reported, never loaded; :func:`check_rng_state`
checks the RNG states it holds on fresh generators before :func:`restore_rng_state` sets
the process's own.

A process killed while writing leaves its temporary file (``.<name>.<pid>-<hex>.tmp``, see
``netdsl.weights.TEMP_NAME``); :func:`remove_stale_temporaries` removes those of a prefix,
and the first snapshot a process writes under a prefix calls it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.diagnostics import DataError, Span
from netdsl.weights import (
    CHECKSUM_KEY,
    TEMP_NAME,
    as_cpu_tensors,
    file_sha256,
    fsync_dir,
    load_weights,
    load_weights_with_metadata,
    payload_sha256,
    save_weights,
)

__all__ = [
    "Snapshot",
    "snapshot_paths",
    "write_snapshot",
    "find_latest",
    "read_snapshot",
    "capture_rng_state",
    "check_rng_state",
    "restore_rng_state",
    "remove_stale_temporaries",
]

log = logging.getLogger("netdsl")

WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".solverstate.safetensors"
FORMAT = "netdsl-solverstate-1"

_HINT_CORRUPT = (
    "the snapshot is damaged or its two files come from different runs; "
    "resume from an earlier snapshot"
)


@dataclass
class Snapshot:
    """A verified snapshot, as read back by :func:`read_snapshot`."""

    weights: dict[str, torch.Tensor]
    solver_tensors: dict[str, torch.Tensor]
    state: dict[str, Any]
    iteration: int
    net_name: str
    path: Path  # the .solverstate.safetensors file
    weights_path: Path


def snapshot_paths(prefix: str | os.PathLike[str], iteration: int) -> tuple[Path, Path]:
    """The (weights, solver state) paths of the snapshot at ``iteration``."""
    stem = f"{os.fspath(prefix)}_iter_{iteration}"
    return Path(stem + WEIGHTS_SUFFIX), Path(stem + STATE_SUFFIX)


def write_snapshot(
    prefix: str | os.PathLike[str],
    iteration: int,
    weights: Mapping[str, torch.Tensor],
    solver_tensors: Mapping[str, torch.Tensor],
    state: dict[str, Any],
    net_name: str,
) -> Path:
    """Write the snapshot at ``iteration`` and return its solver-state path.

    ``state`` must be JSON-serialisable (iteration counters, lr-policy state, data
    position, :func:`capture_rng_state`'s dict...); tensors go in ``solver_tensors``.
    """
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    wpath, spath = snapshot_paths(prefix, iteration)
    folder = spath.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the snapshot folder: {e.strerror or e}", Span(str(folder))
        ) from None
    state_json = json.dumps(state, sort_keys=True)
    key = os.path.abspath(os.fspath(prefix))
    if key not in _swept:  # the first snapshot of this prefix in this process
        _swept.add(key)
        remove_stale_temporaries(prefix)

    # Rewriting iteration N: drop its old solver state first, so that a crash while the
    # new weights replace the old ones cannot leave a stale but complete-looking pair.
    if spath.exists():
        try:
            spath.unlink()
        except OSError as e:
            raise DataError(
                f"cannot replace the old snapshot: {e.strerror or e}", Span(str(spath))
            ) from None
        fsync_dir(folder)

    save_weights(
        wpath,
        weights,
        metadata={"netdsl": "weights", "net_name": net_name, "iteration": str(iteration)},
    )
    tensors = as_cpu_tensors(solver_tensors)
    meta = {
        "netdsl": "solverstate",
        "snapshot_format": FORMAT,
        "net_name": net_name,
        "iteration": str(iteration),
        "state": state_json,
        "weights_file": wpath.name,
        "weights_sha256": file_sha256(wpath),
    }
    save_weights(spath, tensors, metadata=meta)  # adds the checksum (CHECKSUM_KEY)
    return spath


#: Prefixes (absolute) whose stale temporary files this process has removed.
_swept: set[str] = set()


def _running(pid: int) -> bool:
    """Whether process ``pid`` (of this machine) may still be running."""
    if pid == os.getpid() or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # no such process can exist
        return False
    return True


def remove_stale_temporaries(prefix: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that snapshot writes of ``prefix`` killed midway left,
    naming each in a log line; returns their paths.

    Only a regular file (not a link) whose whole name is that of a netdsl temporary file
    (``netdsl.weights.TEMP_NAME``) of one of this prefix's snapshot files is removed, and
    only when the process that wrote it (its pid is in the name) is not running, so the
    file of a live writer is never touched.
    """
    folder_s, base = os.path.split(os.fspath(prefix))
    folder = Path(folder_s or ".")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    ours = re.compile(re.escape(base) + r"_iter_\d+(?:\.solverstate)?" + re.escape(WEIGHTS_SUFFIX))
    removed: list[Path] = []
    for entry in sorted(entries, key=lambda e: e.name):
        m = TEMP_NAME.fullmatch(entry.name)
        if m is None or not ours.fullmatch(m.group(1)):
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        if m.group(2) is not None and _running(int(m.group(2))):
            continue
        path = folder / entry.name
        try:
            path.unlink()
        except FileNotFoundError:  # another process removed it first
            continue
        except OSError as e:
            log.warning(f"netdsl: cannot remove stale temporary file {path}: {e.strerror or e}")
            continue
        log.info(f"netdsl: removed stale temporary file {path} from an interrupted snapshot")
        removed.append(path)
    return removed


def _pattern(base: str) -> re.Pattern[str]:
    return re.compile(re.escape(base) + r"_iter_(\d+)" + re.escape(STATE_SUFFIX))


def find_latest(prefix: str | os.PathLike[str]) -> Path | None:
    """The solver-state path of the highest-iteration complete snapshot, if any.

    Complete means both files are present; checksums are verified by
    :func:`read_snapshot`, not here.
    """
    folder_s, base = os.path.split(os.fspath(prefix))
    folder = Path(folder_s or ".")
    if not folder.is_dir():
        return None
    pat = _pattern(base)
    best: tuple[int, Path] | None = None
    for entry in folder.iterdir():
        m = pat.fullmatch(entry.name)
        if not m:
            continue
        n = int(m.group(1))
        weights = folder / (entry.name[: -len(STATE_SUFFIX)] + WEIGHTS_SUFFIX)
        if entry.is_file() and weights.is_file() and (best is None or n > best[0]):
            best = (n, entry)
    return None if best is None else best[1]


def _pair_for(where: str | os.PathLike[str]) -> tuple[Path, Path]:
    s = os.fspath(where)
    if s.endswith(STATE_SUFFIX):
        return Path(s[: -len(STATE_SUFFIX)] + WEIGHTS_SUFFIX), Path(s)
    if s.endswith(WEIGHTS_SUFFIX):
        return Path(s), Path(s[: -len(WEIGHTS_SUFFIX)] + STATE_SUFFIX)
    latest = find_latest(s)
    if latest is None:
        raise DataError(
            "no complete snapshot found for this prefix",
            Span(s),
            hint=f"snapshots are named <prefix>_iter_<N>{WEIGHTS_SUFFIX} plus "
            f"<prefix>_iter_<N>{STATE_SUFFIX}; give a prefix or either file",
        )
    return Path(str(latest)[: -len(STATE_SUFFIX)] + WEIGHTS_SUFFIX), latest


def read_snapshot(where: str | os.PathLike[str], *, net_name: str | None = None) -> Snapshot:
    """Read and verify a snapshot.

    ``where`` is either file of the pair, or a prefix (the latest complete snapshot is
    used). With ``net_name``, a snapshot of another net is refused. Any missing partner,
    truncation, checksum mismatch or inconsistency raises DataError naming the file.
    """
    wpath, spath = _pair_for(where)
    if not spath.is_file():
        if wpath.is_file():
            raise DataError(
                "the snapshot is incomplete: its solver state file is missing",
                Span(str(spath)),
                hint="it was probably interrupted while being written; resume from an "
                "earlier snapshot, or load only the weights",
            )
        raise DataError("snapshot not found", Span(os.fspath(where)), hint="check the path")
    if not wpath.is_file():
        raise DataError(
            "the snapshot's weights file is missing",
            Span(str(wpath)),
            hint=f"the solver state '{spath.name}' needs it next to it",
        )

    solver_tensors, meta = load_weights_with_metadata(spath, verify=False)  # checked below
    if meta.get("netdsl") != "solverstate" or meta.get("snapshot_format") != FORMAT:
        raise DataError(
            "not a netdsl solver state file",
            Span(str(spath)),
            hint=f"expected a {STATE_SUFFIX} file written by netdsl ({FORMAT})",
        )
    if meta.get(CHECKSUM_KEY) != payload_sha256(solver_tensors, meta):
        raise DataError(
            "the solver state is corrupt (checksum mismatch)", Span(str(spath)), hint=_HINT_CORRUPT
        )
    try:
        iteration = int(meta["iteration"])
        state = json.loads(meta["state"])
        snap_net = meta["net_name"]
        weights_sha = meta["weights_sha256"]
    except (KeyError, ValueError) as e:
        raise DataError(
            f"the solver state's metadata is incomplete ({e})", Span(str(spath)), hint=_HINT_CORRUPT
        ) from None
    if not isinstance(state, dict):
        raise DataError("the solver state's state is not an object", Span(str(spath)),
                        hint=_HINT_CORRUPT)
    if iteration < 0:
        raise DataError(f"the solver state is of iteration {iteration}, which is negative",
                        Span(str(spath)), hint=_HINT_CORRUPT)
    m = re.search(r"_iter_(\d+)" + re.escape(STATE_SUFFIX) + "$", spath.name)
    if m and int(m.group(1)) != iteration:
        raise DataError(
            f"the file name says iteration {m.group(1)} but the solver state is of "
            f"iteration {iteration}",
            Span(str(spath)),
            hint="snapshot files must not be renamed",
        )
    if net_name is not None and snap_net != net_name:
        raise DataError(
            f"the snapshot is of net '{snap_net}', not '{net_name}'",
            Span(str(spath)),
            hint="resume with the spec the snapshot was trained with",
        )
    if file_sha256(wpath) != weights_sha:
        raise DataError(
            f"the weights file does not match its solver state '{spath.name}' (checksum mismatch)",
            Span(str(wpath)),
            hint=_HINT_CORRUPT,
        )
    weights = load_weights(wpath, verify=False)  # the file's sha256 is checked above
    return Snapshot(weights, solver_tensors, state, iteration, snap_net, spath, wpath)


# ------------------------------------------------------------------------------- RNG


def capture_rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The RNG states of python ``random``, numpy's global RNG and torch (CPU, CUDA).

    Returns a JSON-able dict (put it in ``state``) and tensors named ``rng.*`` (put them
    in ``solver_tensors``); :func:`restore_rng_state` takes both back.
    """
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, np.asarray(np_keys).tolist(), np_pos, np_has_gauss, np_gauss],
    }
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.torch_cuda.{i}"] = s
    return state, tensors


_MT_WORDS = 624  # the Mersenne Twister's state words (python's random and numpy's legacy RNG)


def _mt_state(words: Any, pos: Any, what: str) -> None:
    """Refuse a Mersenne Twister state unless it has 624 words below 2**32 and a position
    in 0..624."""
    def word(w: Any) -> bool:
        return isinstance(w, int) and not isinstance(w, bool) and 0 <= w < 2**32

    if not isinstance(words, list) or len(words) != _MT_WORDS:
        n = len(words) if isinstance(words, list) else type(words).__name__
        raise DataError(f"its {what} RNG state is not valid: it should hold {_MT_WORDS} "
                        f"32-bit words, it holds {n}")
    bad = next((w for w in words if not word(w)), None)
    if bad is not None:
        raise DataError(f"its {what} RNG state is not valid: {bad!r} is not a 32-bit word")
    if not isinstance(pos, int) or isinstance(pos, bool) or not 0 <= pos <= _MT_WORDS:
        raise DataError(f"its {what} RNG state is not valid: its position {pos!r} is not "
                        f"in 0..{_MT_WORDS}")


def _gauss(value: Any, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise DataError(f"its {what} RNG state is not valid: its cached gaussian {value!r} "
                        "is not a number")


def _byte_state(t: Any, key: str, want: int | None) -> None:
    """Refuse a torch generator state unless it is a 1-D uint8 tensor (of ``want`` bytes)."""
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
        shown = f"{str(t.dtype)[6:]} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else t
        raise DataError(f"its torch RNG state '{key}' should be a 1-D uint8 tensor, it is "
                        f"{shown}")
    if want is not None and t.numel() != want:
        raise DataError(f"its torch RNG state '{key}' has {t.numel()} bytes; this torch's "
                        f"has {want}")


def check_rng_state(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Raise DataError (without a span: the caller knows the file) unless
    :func:`restore_rng_state` can restore every part of ``state`` and ``tensors``: python's
    and numpy's Mersenne Twister states, and torch's states as 1-D uint8 tensors of the
    right size, each also tried on a fresh generator. The process's own generators are
    not touched."""
    try:
        if "python" in state:
            version, internal, gauss = state["python"]
            if version != 3 or not isinstance(internal, list) or not internal:
                raise DataError(f"its python RNG state is not valid (version {version!r})")
            _mt_state(internal[:-1], internal[-1], "python")
            _gauss(gauss, "python")
            random.Random().setstate((version, tuple(internal), gauss))
        if "numpy" in state:
            name, keys, pos, has_gauss, gauss = state["numpy"]
            if name != "MT19937" or has_gauss not in (0, 1):
                raise DataError(f"its numpy RNG state is not valid ({name!r}, has_gauss "
                                f"{has_gauss!r})")
            _mt_state(keys, pos, "numpy")
            _gauss(gauss, "numpy")
            np.random.RandomState().set_state(
                (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"its python or numpy RNG state is not valid ({e})") from None
    cpu = tensors.get("rng.torch_cpu")
    if cpu is not None:
        _byte_state(cpu, "rng.torch_cpu", torch.get_rng_state().numel())
        try:
            torch.Generator().set_state(cpu)
        except RuntimeError as e:
            raise DataError(f"its torch RNG state 'rng.torch_cpu' is not valid ({e})") from None
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for key, t in tensors.items():
        m = re.fullmatch(r"rng\.torch_cuda\.(\d+)", key)
        if m is not None:
            i = int(m.group(1))
            _byte_state(t, key, torch.cuda.get_rng_state(i).numel() if i < cuda else None)


def restore_rng_state(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Put back what :func:`capture_rng_state` captured (missing parts are skipped); check
    it first with :func:`check_rng_state`."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            t = tensors.get(f"rng.torch_cuda.{i}")
            if t is not None:
                torch.cuda.set_rng_state(t, i)
