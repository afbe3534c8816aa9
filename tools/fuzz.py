"""Fuzz netdsl's front end outside the test suite.

    python tools/fuzz.py --cases 10000 [--seed S] [--jobs J] [--out DIR]
                         [--time-limit S] [--memory-limit MB]

Runs N cases (the shipped specs and shared Caffe prototxts unmutated first, then mutated
ones and generated specs: ``tests/fuzzing.py``) through shapes, placement, expand,
convert both ways (with a round trip) and compile, each case in a worker subprocess with
a memory limit and a time limit (``tests/fuzz_worker.py``). Every input must give a
result or a netdsl diagnostic; anything else is a failure, saved to DIR as the case's
text and a note (``<id>.net`` and ``<id>.txt``). Exit status 1 if any case failed.
Case ``--seed S`` number ``I`` is the same case on every run: ``--only I`` reruns it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzz_worker import Limits, Pool, Result, describe, save_reproducer  # noqa: E402
from tests.fuzzing import Case, Seed, make_case, seed_files  # noqa: E402


def _cases(args: argparse.Namespace, seeds: list[Seed]) -> Iterator[Case]:
    if args.only is not None:
        for i in args.only:  # negative: the unmutated seed files, as numbered below
            if i < 0:
                s = seeds[-1 - i]
                yield Case(args.seed, i, s.name, s.suffix, s.text.encode("utf-8"))
            else:
                yield make_case(args.seed, i, seeds, big=True)
        return
    n = args.cases
    plain = [] if args.no_seeds else seeds[:n]
    for i, s in enumerate(plain):
        yield Case(args.seed, -1 - i, s.name, s.suffix, s.text.encode("utf-8"))
    for i in range(n - len(plain)):
        yield make_case(args.seed, i, seeds, big=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/fuzz.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="how many cases (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", type=Path, default=Path("fuzz-failures"),
                   help="where reproducers go (default ./fuzz-failures)")
    p.add_argument("--time-limit", type=float, default=20.0, help="seconds per case (20)")
    p.add_argument("--memory-limit", type=int, default=2048, help="MB per worker (2048)")
    p.add_argument("--compile-limit", type=int, default=64,
                   help="compile nets whose params + activations fit in this many MB (64)")
    p.add_argument("--no-compile", action="store_true", help="skip the compile stage")
    p.add_argument("--no-seeds", action="store_true",
                   help="do not run the unmutated seed files first")
    p.add_argument("--only", type=int, nargs="+", default=None, metavar="I",
                   help="run only these case numbers of --seed")
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=True)
    seeds = seed_files()
    limits = Limits(args.time_limit, args.memory_limit, args.compile_limit << 20,
                    not args.no_compile)
    total = len(args.only) if args.only is not None else args.cases
    failed: list[Result] = []
    by_kind: Counter[tuple[str, str]] = Counter()
    stages: Counter[tuple[str, str]] = Counter()
    start = time.monotonic()
    slowest = (0.0, "")
    done, interrupted = 0, False
    with Progress(TextColumn("fuzz"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[failed]} failed"), console=console) as bar, \
            Pool(args.jobs, limits) as pool:
        task = bar.add_task("fuzz", total=total, failed=0)
        try:
            for res in pool.run(_cases(args, seeds)):
                done += 1
                for st in res.stages.items():
                    stages[st] += 1
                slowest = max(slowest, (res.seconds, res.case.id))
                if res.failures:
                    failed.append(res)
                    for f in res.failures:
                        by_kind[f.stage, f.type] += 1
                    save_reproducer(res, args.out)
                    bar.console.print(describe(res), markup=False, highlight=False,
                                      soft_wrap=True)
                bar.update(task, advance=1, failed=len(failed))
        except KeyboardInterrupt:  # Ctrl-C: the summary of the cases run so far
            interrupted = True
    took = time.monotonic() - start

    out = Console()
    summary = Table(title=f"{done} cases{' (interrupted)' if interrupted else ''} "
                    f"in {took:.0f} s (seed {args.seed}, "
                    f"{args.jobs} job{'s' if args.jobs > 1 else ''}), slowest "
                    f"{slowest[0]:.1f} s ({slowest[1]})")
    summary.add_column("stage")
    for col in ("ok", "diagnostic", "skipped", "failed"):
        summary.add_column(col, justify="right")
    for name in dict.fromkeys(s for s, _ in stages):
        summary.add_row(name, *(str(stages[name, c]) for c in
                                ("ok", "diagnostic", "skipped", "failed")))
    out.print(summary)
    if not failed:
        out.print("no failures")
        return 0
    table = Table(title=f"{len(failed)} failed cases; reproducers in {args.out}/")
    table.add_column("stage")
    table.add_column("exception")
    table.add_column("cases", justify="right")
    for (stage, kind), n in by_kind.most_common():
        table.add_row(stage, kind, str(n))
    out.print(table)
    return 1


if __name__ == "__main__":
    sys.exit(main())
