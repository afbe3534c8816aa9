"""DummyData (Caffe DummyDataLayer): tops filled by fillers, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from ..fields import doc
from . import register
from .base import Arity, Filler, Kernel, LayerType, Role, Shape, ShapeContext


@dataclass(frozen=True)
class DummyDataParams:
    data_filler: tuple[Filler, ...] = field(
        default=(), metadata=doc("0 (all zeros), 1 (for every top) or one filler per top")
    )
    shape: tuple[tuple[int, ...], ...] = field(
        default=(), metadata=doc("full shape of each top, batch included (1 or one per top)")
    )
    num: tuple[int, ...] = field(default=(), metadata=doc("deprecated 4-D form: batch"))
    channels: tuple[int, ...] = field(default=(), metadata=doc("deprecated 4-D form: channels"))
    height: tuple[int, ...] = field(default=(), metadata=doc("deprecated 4-D form: height"))
    width: tuple[int, ...] = field(default=(), metadata=doc("deprecated 4-D form: width"))


_T = TypeVar("_T")


def _pick(values: tuple[_T, ...], i: int) -> _T:
    return values[0] if len(values) == 1 else values[i]


def dummy_shapes(p: DummyDataParams, n_tops: int, ctx: ShapeContext) -> tuple[Shape, ...]:
    """Caffe's DummyDataLayer::LayerSetUp: shapes exactly as written (batch included)."""
    if len(p.data_filler) not in (0, 1, n_tops):
        raise ctx.error(
            f"{len(p.data_filler)} data fillers for {n_tops} tops; give 0, 1 or {n_tops}",
            "data_filler",
        )
    legacy = {"num": p.num, "channels": p.channels, "height": p.height, "width": p.width}
    if any(legacy.values()):
        if p.shape:
            raise ctx.error("give either shape or num/channels/height/width, not both", "shape")
        for name, vals in legacy.items():
            if len(vals) not in (1, n_tops):
                raise ctx.error(
                    f"give '{name}' once, or once per top ({n_tops}); got {len(vals)}", name
                )
        shapes: tuple[Shape, ...] = tuple(
            (_pick(p.num, i), _pick(p.channels, i), _pick(p.height, i), _pick(p.width, i))
            for i in range(n_tops)
        )
    else:
        if len(p.shape) not in (1, n_tops):
            raise ctx.error(
                f"give 'shape' once, or once per top ({n_tops}); got {len(p.shape)}", "shape",
                "e.g. shape: [64, 3, 32, 32] (the batch is part of the shape)",
            )
        shapes = tuple(_pick(p.shape, i) for i in range(n_tops))
    for s in shapes:
        if any(d < 1 for d in s):
            raise ctx.error(f"shape {list(s)} has a dimension below 1", "shape")
    return shapes


@register
class DummyData(LayerType[DummyDataParams]):
    """Makes tops of fixed shapes filled by `data_filler` (Caffe DummyDataLayer)."""

    caffe_names = ("DUMMY_DATA",)
    bottoms = Arity.exact(0)
    tops = Arity(1)
    role = Role.GENERATOR
    Params = DummyDataParams

    def shape(
        self, p: DummyDataParams, bottoms: tuple[Shape, ...], ctx: ShapeContext
    ) -> tuple[Shape, ...]:
        return dummy_shapes(p, len(ctx.tops), ctx)

    def lower(self, p: DummyDataParams, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]
              ) -> Kernel:
        from ..kernels.plumbing import DummyData as Module

        fillers = [Filler() if not p.data_filler else _pick(p.data_filler, i)
                   for i in range(len(tops))]
        return Module(tops, fillers)
