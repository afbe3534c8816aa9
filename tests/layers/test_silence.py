from __future__ import annotations

from netdsl.layers import REGISTRY

from .helpers import lower, rand, shapes


def test_names_and_shapes() -> None:
    k = REGISTRY["SILENCE"]
    assert k is REGISTRY["Silence"] and (k.tops.min, k.tops.max) == (0, 0)
    assert shapes("Silence", ((2, 3), (4,)), tops=0) == ()


def test_lowering() -> None:
    m, _ = lower("Silence", ((2, 3), (4,)), tops=0)
    assert m(rand(2, 3), rand(4)) == ()
