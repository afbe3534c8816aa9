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
anything, so a corrupt or mismatched pair is reported, never loaded.
"""

from __future__ import annotations

import hashlib
import json
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
    as_cpu_tensors,
    fsync_dir,
    load_weights,
    load_weights_with_metadata,
    save_weights,
)

__all__ = [
    "Snapshot",
    "snapshot_paths",
    "write_snapshot",
    "find_latest",
    "read_snapshot",
    "capture_rng_state",
    "restore_rng_state",
]

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


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _payload_sha256(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str]) -> str:
    """Digest of the solver state's tensors (names, dtypes, shapes, bytes) and metadata.

    Computed from the tensors rather than the file bytes, because the digest itself is
    stored in the file's header.
    """
    h = hashlib.sha256()
    for key in sorted(meta):
        h.update(f"meta\0{key}\0{len(meta[key])}\0{meta[key]}\0".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy()
        h.update(f"tensor\0{name}\0{t.dtype}\0{tuple(t.shape)}\0{raw.nbytes}\0".encode())
        h.update(raw.data)  # the array's bytes, as a memoryview
    return h.hexdigest()


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
        "weights_sha256": _file_sha256(wpath),
    }
    meta["payload_sha256"] = _payload_sha256(tensors, meta)
    save_weights(spath, tensors, metadata=meta)
    return spath


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

    solver_tensors, meta = load_weights_with_metadata(spath)
    if meta.get("netdsl") != "solverstate" or meta.get("snapshot_format") != FORMAT:
        raise DataError(
            "not a netdsl solver state file",
            Span(str(spath)),
            hint=f"expected a {STATE_SUFFIX} file written by netdsl ({FORMAT})",
        )
    stored = {k: v for k, v in meta.items() if k not in ("payload_sha256", "format")}
    if meta.get("payload_sha256") != _payload_sha256(solver_tensors, stored):
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
        raise DataError("the solver state's state is not an object", Span(str(spath)))
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
    if _file_sha256(wpath) != weights_sha:
        raise DataError(
            f"the weights file does not match its solver state '{spath.name}' (checksum mismatch)",
            Span(str(wpath)),
            hint=_HINT_CORRUPT,
        )
    weights = load_weights(wpath)
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


def restore_rng_state(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Put back what :func:`capture_rng_state` captured (missing parts are skipped)."""
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
