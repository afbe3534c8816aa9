from __future__ import annotations

from netdsl.layers import REGISTRY
from netdsl.layers.base import Role

from .helpers import shapes


def test_names_and_shapes() -> None:
    k = REGISTRY["SILENCE"]
    assert k is REGISTRY["Silence"] and (k.tops.min, k.tops.max) == (0, 0)
    assert shapes("Silence", ((2, 3), (4,)), tops=0) == ()


def test_needs_no_device_and_no_kernel() -> None:
    """Silence computes nothing: placement gives it no shard, the graph no node."""
    k = REGISTRY["Silence"]
    assert k.role is Role.SINK
    assert k.sharding(k.Params(), ((2, 3), (4,))).computes is False
