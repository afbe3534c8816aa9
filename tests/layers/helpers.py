"""Helpers for the layer tests: contexts, params from keywords or spec text, lowering."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from netdsl.caffe_compat import upgrade
from netdsl.diagnostics import ShapeError, Span
from netdsl.fields import convert
from netdsl.layers import REGISTRY, LayerType
from netdsl.layers.base import Alias, Shape, ShapeContext, forget_warnings
from netdsl.parse import parse

PATH = "layer.net"
# The fields a layer block holds besides its own params.
COMMON = ("name", "type", "bottom", "top", "param", "loss_weight", "include", "exclude",
          "phase", "propagate_down")


def kind(type_name: str) -> LayerType:
    return REGISTRY[type_name]


BOTTOM_LINE, TOP_LINE = 90, 91


def field_line(params: dict[str, Any], name: str) -> int:
    """The line ``make_ctx`` pretends the field ``name`` was written on."""
    if name in ("bottom", "top"):
        return BOTTOM_LINE if name == "bottom" else TOP_LINE
    return list(params).index(name) + 2


def make_ctx(type_name: str, tops: int | tuple[str, ...] = 1, written: tuple[str, ...] = (),
             batch: int = 1) -> ShapeContext:
    """A ShapeContext whose fields in ``written`` sit on lines 2, 3, ... of PATH, and
    ``bottom`` / ``top`` on lines BOTTOM_LINE / TOP_LINE. It stands for a fresh load of
    the file: warnings given before (once per process) are given again."""
    forget_warnings()
    names = tops if isinstance(tops, tuple) else tuple(f"t{i}" for i in range(tops))
    spans = {f: Span(PATH, i + 2, 3) for i, f in enumerate(written)}
    spans["bottom"], spans["top"] = Span(PATH, BOTTOM_LINE, 3), Span(PATH, TOP_LINE, 3)
    return ShapeContext("L", type_name, Span(PATH, 1, 1), spans, names, batch, {})


def params(type_name: str, **kw: Any) -> Any:
    return kind(type_name).Params(**kw)


def shapes(type_name: str, bottoms: tuple[Shape, ...], tops: int = 1, **kw: Any
           ) -> tuple[Shape, ...]:
    """Top shapes of a layer with params ``kw`` (the keywords count as written fields)."""
    return kind(type_name).shape(params(type_name, **kw), bottoms,
                                 make_ctx(type_name, tops, tuple(kw)))


def shape_error(type_name: str, bottoms: tuple[Shape, ...], tops: int = 1,
                match: str | None = None, field: str | None = None, **kw: Any) -> ShapeError:
    """The ShapeError the shape rule raises; with ``field``, check that it points there."""
    with pytest.raises(ShapeError, match=match) as info:
        shapes(type_name, bottoms, tops, **kw)
    err = info.value
    if field is not None:
        assert err.span.line == field_line(kw, field), f"error not at {field}: {err.span}"
    return err


def params_from_text(type_name: str, body: str) -> Any:
    """Params of ``layer { type: "<type_name>" <body> }`` through parse + Caffe upgrade."""
    text = f'layer {{ name: "l" type: "{type_name}" bottom: "x" top: "y" {body} }}'
    file = upgrade(parse(text, PATH))
    layer = file.items[0].value  # type: ignore[union-attr]
    return convert(kind(type_name).Params, layer.items, "layer 'l'", ignore=COMMON)


class Lowered:
    """A layer's kernel (module, call or alias), called the way the compiled graph calls
    it, with the tops always returned as a tuple; other attributes are the kernel's."""

    def __init__(self, kernel: Any, n_tops: int) -> None:
        self.kernel, self.n_tops = kernel, n_tops

    def __call__(self, *xs: Any) -> tuple:
        if isinstance(self.kernel, Alias):
            return (xs[0],) * self.n_tops
        out = self.kernel(*xs)
        return out if isinstance(out, tuple) else (out,)

    def parameters(self) -> Any:
        return self.kernel.parameters() if hasattr(self.kernel, "parameters") else iter(())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)


def lower(type_name: str, bottoms: tuple[Shape, ...], tops: int = 1, seed: int = 0,
          **kw: Any):
    """(kernel, top shapes): the lowered layer with its parameters filled with N(0, 1)."""
    import torch

    k = kind(type_name)
    p = params(type_name, **kw)
    top_shapes = k.shape(p, bottoms, make_ctx(type_name, tops, tuple(kw)))
    module = Lowered(k.lower(p, bottoms, top_shapes), len(top_shapes))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen))
    return module, top_shapes


def rand(*shape: int, seed: int = 0):
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def np_(t: Any) -> np.ndarray:
    return t.detach().double().numpy()


def close(a: Any, b: Any, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(np_(a) if not isinstance(a, np.ndarray) else a,
                               b if isinstance(b, np.ndarray) else np_(b),
                               rtol=tol, atol=tol)


def run_backward(type_name: str, x: Any, *others: Any, **kw: Any) -> tuple[Any, Any, Any]:
    """``type_name`` (params ``kw``) lowered for ``x`` and any further bottoms ``others``
    (given no gradient), run forward, and backward for a random float64 top diff:
    ``(top, top_diff, x's gradient)``; the top has the shape rule's shape."""
    import torch

    m, tops = lower(type_name, (tuple(x.shape), *(tuple(o.shape) for o in others)), **kw)
    x = x.detach().requires_grad_(True)
    (y,) = m(x, *others)
    assert tuple(y.shape) == tops[0]
    top_diff = torch.randn(tops[0], dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, top_diff)
    return y, top_diff, grad


def same_as_torch(m: Lowered, ref: Any, x: Any, tol: float = 1e-4) -> tuple[int, ...]:
    """The lowered layer ``m`` and the torch module ``ref``, given ``m``'s weight and bias,
    make the same top from ``x``; returns its shape."""
    import torch

    with torch.no_grad():
        ref.weight.copy_(m.weight)
        ref.bias.copy_(m.bias)
    (y,) = m(x)
    close(y, ref(x), tol)
    return tuple(y.shape)
