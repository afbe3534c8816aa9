"""Runs fuzz cases (``tests/fuzzing.py``) in worker subprocesses, each case bounded.

A worker is a ``spawn``ed process that sets ``RLIMIT_DATA`` (heap and anonymous maps)
before it imports netdsl, then runs each case it is sent in process, as the CLI would:

* ``shapes``: ``load_spec``, ``build`` (the file's default phase), ``infer_shapes`` and
  the ``--format json`` report; ``placement``: the plan ``shapes --placement`` prints;
* ``expand``: ``print_spec`` of the resolved spec;
* ``to_prototxt`` / ``to_net``: ``convert`` both ways; ``roundtrip_*``: when shapes
  passed, the converted text must load and give the same blob shapes and parameters;
* ``compile``: ``netdsl.compile`` on the CPU, when shapes passed and the parameters and
  activations take at most ``Limits.compile_bytes``.

A stage passes with a result or a ``NetdslError`` (whose rendering must not raise and must
stay one paragraph: at most ``MAX_MESSAGE`` characters for each error, when an
``ErrorList`` reports several). Anything else fails the case:
another exception, ``MemoryError``, a stage running past ``time_limit`` (each stage is
one CLI command; a SIGALRM raises :class:`CaseTimeout` in the worker), or the worker
dying or not answering (the parent kills it ``GRACE`` seconds after the limit of the
stage it last reported, and starts another).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from tests.fuzzing import SPECS, Case

MAX_MESSAGE = 4000
GRACE = 10.0


@dataclass(frozen=True)
class Limits:
    time_limit: float = 20.0        # seconds per stage (one CLI command)
    memory_mb: int = 2048           # RLIMIT_DATA of a worker
    compile_bytes: int = 64 << 20   # compile only nets whose params + activations fit
    compile: bool = True
    env: tuple[tuple[str, str], ...] = ()  # environment variables set in a worker


@dataclass
class Failure:
    stage: str
    type: str
    message: str
    trace: str = ""


@dataclass
class Result:
    case: Case
    seconds: float
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ok/diagnostic/skipped
    failures: list[Failure] = field(default_factory=list)


class CaseTimeout(BaseException):
    """Raised by SIGALRM in a worker: a BaseException, so no ``except Exception`` eats it."""


# --------------------------------------------------------------------------- the worker


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


def _workdir() -> Path:
    """A folder with the shipped specs (for imports) and hostile files to import."""
    d = Path(tempfile.mkdtemp(prefix="netdsl-fuzz-"))
    for p in SPECS.glob("*.net"):
        shutil.copy(p, d / p.name)
    (d / "deep").mkdir()
    (d / "folder.net").mkdir()
    os.mkfifo(d / "fifo.net")
    (d / "binary.net").write_bytes(bytes(range(256)) * 4)
    return d


def _quiet() -> None:
    import logging
    import warnings

    warnings.simplefilter("ignore")
    log = logging.getLogger("netdsl")
    log.handlers[:] = [logging.NullHandler()]
    log.propagate = False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Python layers and rich may print; the parent reads nothing there


def worker_main(conn: Connection, limits: Limits) -> None:
    """The worker's loop: limits first, then netdsl (and torch), then cases until EOF."""
    import resource

    os.environ.update(dict(limits.env))
    cap = limits.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    _quiet()
    import netdsl  # noqa: F401
    import netdsl.build
    import netdsl.convert
    import netdsl.placement
    import netdsl.report  # noqa: F401

    if limits.compile:
        import torch

        torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    work = _workdir()
    conn.send(("ready", None))
    while True:
        try:
            data, suffix = conn.recv()
        except EOFError:
            break
        stages, failures, restart = run_case(data, suffix, work, limits,
                                             lambda st: conn.send(("stage", st)))
        conn.send(("done", (stages, failures)))
        if restart:
            break
    shutil.rmtree(work, ignore_errors=True)


def _same(a: Any, b: Any) -> str | None:
    """None if two shape tables agree on blob shapes and parameters, else what differs."""
    if dict(a.blobs) != dict(b.blobs):
        diff = sorted(k for k in set(a.blobs) | set(b.blobs) if a.blobs.get(k) != b.blobs.get(k))
        return "blob shapes differ: " + ", ".join(
            f"{k} {a.blobs.get(k)} -> {b.blobs.get(k)}" for k in diff[:5])
    if a.total_params != b.total_params:
        return f"parameters differ: {a.total_params} -> {b.total_params}"
    return None


def run_case(data: bytes, suffix: str, work: Path, limits: Limits,
             progress: Callable[[str], None] = lambda s: None
             ) -> tuple[dict[str, str], list[Failure], bool]:
    """All stages on one case, under one SIGALRM; (stage statuses, failures, restart?)."""
    from netdsl import load_spec
    from netdsl.build import build
    from netdsl.cli import default_phase
    from netdsl.convert import convert
    from netdsl.diagnostics import NetdslError, render
    from netdsl.placement import plan
    from netdsl.printer import print_spec
    from netdsl.report import shapes_json
    from netdsl.shapes import infer_shapes

    path = work / ("case" + suffix)
    path.write_bytes(data)
    stages: dict[str, str] = {}
    failures: list[Failure] = []
    got: dict[str, Any] = {}
    fatal = False

    def stage(name: str, fn: Callable[[], Any]) -> bool:
        nonlocal fatal
        if fatal:
            stages[name] = "skipped"
            return False
        progress(name)
        signal.setitimer(signal.ITIMER_REAL, limits.time_limit)
        try:
            got[name] = fn()
            stages[name] = "ok"
            return True
        except NetdslError as e:
            stages[name] = "diagnostic"
            try:
                text = render(e)
            except Exception as r:  # rendering a diagnostic must not fail either
                failures.append(Failure(name, f"render: {type(r).__name__}", str(r)[:2000],
                                        traceback.format_exc(limit=-8)))
                stages[name] = "failed"
                return False
            longest = max((render(x) for x in getattr(e, "errors", ())[:100]), key=len,
                          default=text)
            if len(longest) > MAX_MESSAGE:
                failures.append(Failure(name, "LongDiagnostic", f"{len(longest)} characters: "
                                        + longest[:300] + " ..."))
                stages[name] = "failed"
            return False
        except CaseTimeout:
            fatal = True
            failures.append(Failure(name, "Timeout", f"over {limits.time_limit:g} s"))
        except MemoryError:
            fatal = True
            failures.append(Failure(name, "MemoryError", f"over {limits.memory_mb} MB",
                                    traceback.format_exc(limit=-8)))
        except BaseException as e:  # noqa: B036 -- every other exception is the finding
            failures.append(Failure(name, type(e).__name__, str(e)[:2000],
                                    traceback.format_exc(limit=-8)))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        stages[name] = "failed"
        return False

    def shapes() -> Any:
        spec = load_spec(path)
        net = build(spec, default_phase(spec))
        table = infer_shapes(net)
        shapes_json(table)
        return net, table

    def roundtrip(text: str, ext: str) -> None:
        net, table = got["shapes"]
        rt = work / ("roundtrip" + ext)
        rt.write_text(text, encoding="utf-8")
        try:
            again = infer_shapes(build(load_spec(rt), net.phase))
        except NetdslError as e:
            raise AssertionError("the converted spec fails: " + render(e)[:1500]) from None
        differ = _same(table, again)
        if differ:
            raise AssertionError(differ)

    def compile_() -> None:
        import netdsl

        net, table = got["shapes"]
        netdsl.compile(net, devices="cpu", seed=0)

    try:
        ok = stage("shapes", shapes)
        if ok:
            stage("placement", lambda: plan(*got["shapes"]))
        stage("expand", lambda: print_spec(load_spec(path)))
        if stage("to_prototxt", lambda: convert(path, "prototxt")) and ok:
            stage("roundtrip_prototxt", lambda: roundtrip(got["to_prototxt"], ".prototxt"))
        if stage("to_net", lambda: convert(path, "net")) and ok:
            stage("roundtrip_net", lambda: roundtrip(got["to_net"], ".net"))
        if ok and limits.compile:
            _, table = got["shapes"]
            size = table.total_params * 4 + table.total_activation_bytes
            if size <= limits.compile_bytes:
                stage("compile", compile_)
            else:
                stages["compile"] = "skipped"
    except CaseTimeout:  # fired while a diagnostic was rendered
        fatal = True
        failures.append(Failure("render", "Timeout", f"over {limits.time_limit:g} s"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    got.clear()
    return stages, failures, fatal


# --------------------------------------------------------------------------- the parent


class _Worker:
    def __init__(self, ctx: Any, limits: Limits) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, limits), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.case: Case | None = None
        self.started = 0.0
        self.stage = "startup"
        self.stage_started = 0.0
        self.born = time.monotonic()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class Pool:
    """``jobs`` workers; :meth:`run` yields a :class:`Result` per case as each finishes."""

    def __init__(self, jobs: int = 1, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.ctx = multiprocessing.get_context("spawn")
        self.workers = [_Worker(self.ctx, self.limits) for _ in range(max(1, jobs))]

    def close(self) -> None:
        for w in self.workers:
            w.kill()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = _Worker(self.ctx, self.limits)
        self.workers[self.workers.index(w)] = new
        return new

    def _lost(self, w: _Worker, kind: str, message: str) -> Result:
        assert w.case is not None
        code = w.proc.exitcode
        res = Result(w.case, time.monotonic() - w.started, {w.stage: "failed"},
                     [Failure(w.stage, kind, f"{message} (exit code {code})")])
        self._replace(w)
        return res

    def run(self, cases: Iterable[Case]) -> Iterator[Result]:
        todo = iter(cases)
        pending = True
        hard = self.limits.time_limit + GRACE
        while True:
            for w in list(self.workers):
                if w.ready and w.case is None and pending:
                    case = next(todo, None)
                    if case is None:
                        pending = False
                        continue
                    w.case, w.started, w.stage = case, time.monotonic(), "start"
                    w.stage_started = w.started
                    w.conn.send((case.data, case.suffix))
            busy = [w for w in self.workers if w.case is not None]
            if not pending and not busy:
                return
            ready = wait([w.conn for w in self.workers], timeout=0.5)
            now = time.monotonic()
            for w in list(self.workers):
                if w.conn in ready:
                    try:
                        kind, body = w.conn.recv()
                    except (EOFError, OSError):
                        if w.case is not None:
                            yield self._lost(w, "WorkerDied", "the worker process died")
                        else:
                            if not w.ready:
                                raise RuntimeError("a fuzz worker died on startup") from None
                            self._replace(w)
                        continue
                    if kind == "ready":
                        w.ready = True
                    elif kind == "stage":
                        w.stage, w.stage_started = body, now
                    elif kind == "done" and w.case is not None:
                        stages, failures = body
                        yield Result(w.case, now - w.started, stages, failures)
                        w.case = None
                        if any(f.type in ("Timeout", "MemoryError") for f in failures):
                            self._replace(w)
                elif w.case is not None and now - w.stage_started > hard:
                    yield self._lost(w, "Hang", f"no answer in {hard:g} s; SIGALRM did "
                                     "not interrupt it")
                elif not w.ready and now - w.born > 120:
                    raise RuntimeError("a fuzz worker did not start in 120 s")


def save_reproducer(result: Result, folder: Path) -> Path:
    """The case's bytes and a note on what failed: <folder>/<case id><suffix> and .txt."""
    folder.mkdir(parents=True, exist_ok=True)
    case = result.case
    path = folder / f"{case.id}{case.suffix}"
    path.write_bytes(case.data)
    lines = [f"case {case.id}: from {case.origin}, mutations {', '.join(case.mutations) or '-'}",
             f"stages: {result.stages}",
             "imports of the shipped specs resolve next to it: copy specs/*.net there", ""]
    for f in result.failures:
        lines += [f"[{f.stage}] {f.type}: {f.message}", f.trace, ""]
    (folder / f"{case.id}.txt").write_text("\n".join(lines), encoding="utf-8")
    return path


def describe(result: Result) -> str:
    """A short account of a failed case, with the head of its text."""
    head = result.case.data[:400].decode("utf-8", "backslashreplace")
    out = [f"case {result.case.id} ({result.case.origin}; "
           f"{', '.join(result.case.mutations) or 'unmutated'}):"]
    for f in result.failures:
        out.append(f"  [{f.stage}] {f.type}: {f.message[:500]}")
        where = [ln.strip() for ln in f.trace.splitlines() if ln.strip().startswith("File ")]
        if where:
            out.append("    at " + where[-1])
    out.append("  text: " + head.replace("\n", "\n        "))
    return "\n".join(out)
