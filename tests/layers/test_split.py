from __future__ import annotations

from netdsl.layers import REGISTRY

from .helpers import lower, rand, shapes


def test_names_and_shapes() -> None:
    assert REGISTRY["SPLIT"] is REGISTRY["Split"]
    assert REGISTRY["Split"].name == "Split"
    assert shapes("Split", ((2, 3),), tops=3) == ((2, 3),) * 3


def test_lowering() -> None:
    x = rand(2, 3)
    m, _ = lower("Split", ((2, 3),), tops=3)
    ys = m(x)
    assert len(ys) == 3 and all(y is x for y in ys)
