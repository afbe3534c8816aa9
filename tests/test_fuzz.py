"""Fuzzing (issue 14): every input gives a result or a netdsl diagnostic, never another
exception, a hang or a memory blow-up.

Each case runs ``shapes`` (and its placement), ``expand``, ``convert`` both ways with a
round trip, and ``compile`` for small nets, in a worker subprocess with a memory limit and
a time limit per stage (``tests/fuzz_worker.py``). The cases (``tests/fuzzing.py``): every
hostile input once on a tiny net, seeded mutations of the shipped specs and shared Caffe
prototxts, and hypothesis-generated specs from the grammar. All deterministic; a failure
prints the case, its stage, exception and text. ``tools/fuzz.py --cases N`` runs more.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_worker import Limits, Pool, Result, describe
from tests.fuzzing import TINY, Case, hostile_cases, make_case, mutate, random_spec, seed_files

SEED = 14
MUTATED = 120
#: netdsl's default layer limit (100,000) makes the layer-explosion cases cost seconds per
#: stage; a lower one here keeps the file fast and still checks the limit holds.
LIMITS = Limits(time_limit=20.0, memory_mb=2048, compile_bytes=64 << 20,
                env=(("NETDSL_MAX_LAYERS", "5000"),))


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    with Pool(1, LIMITS) as p:
        yield p


def _check(results: Sequence[Result]) -> None:
    failed = [r for r in results if r.failures]
    assert not failed, f"{len(failed)} of {len(results)} cases failed:\n\n" + "\n\n".join(
        describe(r) for r in failed)


def test_hostile_inputs(pool: Pool) -> None:
    _check(list(pool.run(hostile_cases())))


def test_mutated_seed_files(pool: Pool) -> None:
    seeds = seed_files()
    _check(list(pool.run(make_case(SEED, i, seeds) for i in range(MUTATED))))


class _DrawChooser:
    """``random_spec``'s choices drawn by hypothesis."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def pick(self, options: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(options))


@st.composite
def net_specs(draw: Any) -> str:
    text = random_spec(_DrawChooser(draw))
    if draw(st.booleans()):
        text = mutate(draw(st.randoms(use_true_random=False)), text, False, [])
    return text


@settings(max_examples=100, derandomize=True, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(text=net_specs())
def test_generated_specs(pool: Pool, text: str) -> None:
    case = Case(SEED, 0, "hypothesis", ".net", text.encode("utf-8", "surrogatepass"))
    _check(list(pool.run([case])))


def test_the_harness_catches_a_hang_and_goes_on() -> None:
    """A case over its time limit is a failure, and the next case still runs."""
    slow = Case(0, 0, "slow", ".net", (TINY + "".join(
        f'layer {{ name: "r{i}" type: ReLU bottom: "prob" top: "prob" }}\n'
        for i in range(3000))).encode())
    fast = Case(0, 1, "fast", ".net", TINY.encode())
    with Pool(1, Limits(time_limit=0.05, compile=False)) as p:
        first, second = p.run([slow, fast])
    assert [f.type for f in first.failures] == ["Timeout"]
    assert second.case is fast and second.stages  # a fresh worker took the next case


def test_the_harness_catches_a_memory_blow_up() -> None:
    """A case past the worker's memory limit is a failure (netdsl's string limit raised
    so far that doubling a string 40 times gets to run)."""
    lets = ['let s0 = "ab"'] + [f"let s{i} = $s{i - 1} + $s{i - 1}" for i in range(1, 40)]
    text = "\n".join(lets) + '\nname: $s39\n' + TINY.split("\n", 1)[1]
    case = Case(0, 0, "doubling", ".net", text.encode())
    limits = Limits(memory_mb=1024, compile=False, env=(("NETDSL_MAX_STRING_LENGTH", str(2**50)),))
    with Pool(1, limits) as p:
        [res] = p.run([case])
    assert res.failures and res.failures[0].type == "MemoryError", res.failures
