"""Edits: ``replace``, ``update``, ``remove`` and ``insert`` on a file's flat layer list.

They run after the file's items are expanded and merged with its imports, in file order;
a target names every layer so called. ``replace`` keeps the old layer's wiring,
``remove`` rewires its readers to its bottoms, ``insert`` chains new layers in and moves
later readers to the last new top. Edits look through instance names (``bottom: "inst"``)
with :meth:`~.groups.Expander.effective`, since those resolve only at the very end.
"""

from __future__ import annotations

import dataclasses

from .. import syntax as s
from ..diagnostics import Span, SpecError, did_you_mean, source_line
from .common import (
    add_field,
    fields_of,
    is_layer,
    last_top,
    layer_name,
    map_blobs,
    name_of,
    set_fields,
    tops_of,
    values_of,
)
from .groups import Chain, Ctx, Expander

#: The edit statements, in the order a file's items may hold them.
EDITS = (s.Replace, s.Update, s.Remove, s.Insert)

#: What ``replace`` keeps of the old layer unless its body sets it.
WIRING = ("name", "bottom", "top", "devices", "phase", "include", "exclude")


def apply_edit(ex: Expander, e: s.Item, items: list[s.Field]) -> list[s.Field]:
    """One edit statement applied to a file's layer list: a new list."""
    assert isinstance(e, EDITS)
    ev = ex.ev
    target = e.target
    tspan = _target_span(e.span, target)
    if "${" in target:
        target = ev.interpolate(s.Scalar(target, "string", tspan), ev.globals)
    verb = "insert " + e.where if isinstance(e, s.Insert) else type(e).__name__.lower()
    idxs = [i for i, f in enumerate(items) if layer_name(f) == target]
    if not idxs:
        names = [n for f in items if (n := layer_name(f))]
        hint = did_you_mean(target, names)
        if hint is None and target in ex.aliases:
            inner = next((n for n in names if n.startswith(target + "/")), None)
            hint = f"'{target}' is a group instance; edit one of its layers" + (
                f", e.g. '{inner}'" if inner else "")
        raise SpecError(f"{verb}: no layer named '{target}'", tspan, hint)
    if isinstance(e, s.Replace):
        return _replace(ex, e, items, idxs)
    if isinstance(e, s.Update):
        body = ev.eval_block(e.body, ev.globals)
        out = list(items)
        for i in idxs:
            f = out[i]
            assert isinstance(f.value, s.Block)
            out[i] = dataclasses.replace(f, value=set_fields(f.value, fields_of(body)))
        return out
    if isinstance(e, s.Remove):
        out = list(items)
        for _ in idxs:
            i = next(i for i, f in enumerate(out) if layer_name(f) == target)
            out = _remove_at(ex, out, i, tspan)
        return out
    assert isinstance(e, s.Insert)
    return _insert(ex, e, items, idxs[-1] if e.where == "after" else idxs[0])


def _replace(ex: Expander, e: s.Replace, items: list[s.Field], idxs: list[int]) -> list[s.Field]:
    ev = ex.ev
    raw_type = e.body.first("type")
    group, pos = ex.group_for(raw_type, ev.globals) if raw_type else (None, ())
    if group is not None:
        raw = s.Block(tuple(i for i in e.body.items
                            if not (isinstance(i, s.Field) and i.key == "type")), e.body.span)
        body = ev.eval_block(raw, ev.globals)
    else:
        body = ev.eval_block(e.body, ev.globals)
    args = [ev.eval(a, ev.globals) for a in pos]
    out: list[s.Field] = []
    for i, f in enumerate(items):
        if i not in idxs:
            out.append(f)
            continue
        x = f.value
        assert isinstance(x, s.Block)
        note = (f"replacing layer '{name_of(x)}'", f.span)
        if raw_type is None:
            out.append(dataclasses.replace(f, value=set_fields(x, fields_of(_keep_top(x, body)))))
            continue
        new = _rewire_fields(x, _keep_top(x, body) if group is None else body,
                             keep_type=group is None)
        if group is None:
            out.append(s.Field("layer", new, e.span, e.span, (note,)))
            continue
        inst = s.Field("layer", new, e.span, e.span)
        chain = Chain(last_top(out))
        tops = tops_of(x)
        ex.instantiate(inst, group, fields_of(new), args, Ctx(None, (note,), chain, "file"),
                       out, rename_to=tops[0] if tops else None)
    return out


def _remove_at(ex: Expander, items: list[s.Field], i: int, tspan: Span) -> list[s.Field]:
    x = items[i].value
    assert isinstance(x, s.Block)
    xname = name_of(x)
    eff = ex.effective(items)
    bottoms = [eff(b) for b in values_of(x, "bottom")]
    implicit = not bottoms
    if implicit:
        prev = last_top(items[:i])
        bottoms = [prev] if prev else []
    tops = tops_of(x)
    out = items[:i] + items[i + 1:]
    if tops and all(t in bottoms for t in tops):
        return out  # in place: the blob keeps its name
    pairs = dict(zip(tops, bottoms, strict=False)) if len(tops) == len(bottoms) else {}
    live = set(tops)
    for j in range(i, len(out)):
        f = out[j]
        if not live:
            break
        if not is_layer(f):
            continue
        lb = f.value
        assert isinstance(lb, s.Block)
        reads = [eff(b) for b in values_of(lb, "bottom") if eff(b) in live]
        for b in reads:
            if b not in pairs:
                raise SpecError(
                    f"cannot remove '{xname}': layer '{name_of(lb)}' reads its top '{b}', and "
                    f"'{xname}' has {len(bottoms)} bottom(s) for {len(tops)} top(s), "
                    "which cannot be paired", tspan,
                    f"remove or update '{name_of(lb)}' first",
                    [(f"'{name_of(lb)}' is here", f.span)])
        if reads:
            def rename(b: str, moved: frozenset[str] = frozenset(reads)) -> str:
                return pairs[eff(b)] if eff(b) in moved else b

            lb = map_blobs(lb, "bottom", rename)
            out[j] = dataclasses.replace(f, value=lb)
        live -= set(values_of(lb, "top") or [])  # a writer of the blob takes it over
    if implicit or not tops or i >= len(out) or not is_layer(out[i]):
        return out
    nxt = out[i].value
    assert isinstance(nxt, s.Block)
    if not values_of(nxt, "bottom") and tops[0] in pairs:
        want = pairs[tops[0]]
        if want != last_top(out[:i]):
            out[i] = dataclasses.replace(out[i], value=add_field(
                nxt, "bottom", s.Scalar(want, "string", nxt.span)))
    return out


def _insert(ex: Expander, e: s.Insert, items: list[s.Field], i: int) -> list[s.Field]:
    x = items[i].value
    assert isinstance(x, s.Block)
    eff = ex.effective(items)
    if e.where == "after":
        old = tops_of(x)[0] if tops_of(x) else None
        at = i + 1
    else:
        bottoms = [eff(b) for b in values_of(x, "bottom")]
        old = bottoms[0] if bottoms else last_top(items[:i])
        at = i
    chain = Chain(old, fill=True)
    new: list[s.Field] = []
    ex.expand(e.body.items, ex.ev.globals, Ctx(None, (), chain, "insert"), new)
    out = items[:at] + new + items[at:]
    cur = chain.cur
    if old is None or cur is None or cur == old:
        return out
    for j in range(at + len(new), len(out)):
        f = out[j]
        if not is_layer(f):
            continue
        lb = f.value
        assert isinstance(lb, s.Block)
        reads = old in [eff(b) for b in values_of(lb, "bottom")]
        writes = old in values_of(lb, "top")
        if reads:
            lb = map_blobs(lb, "bottom", lambda b: cur if eff(b) == old else b)
            if writes:
                lb = map_blobs(lb, "top", lambda b: cur if b == old else b)
            out[j] = dataclasses.replace(f, value=lb)
        elif writes:
            break  # the blob is made anew: later readers read that
    return out


# --------------------------------------------------------------------------- module helpers


def _target_span(span: Span, target: str) -> Span:
    """The quoted target of an edit statement, found in the source line if we have it."""
    line = source_line(span.path, span.line) if span.line > 0 else None
    if line is not None:
        hits = [i for i in (line.find('"', span.col - 1), line.find("'", span.col - 1)) if i >= 0]
        if hits:
            i = min(hits)
            return Span(span.path, span.line, i + 1, span.line, i + 3 + len(target))
    return span



def _keep_top(x: s.Block, body: s.Block) -> s.Block:
    """A replacement that renames a layer whose top was its name keeps that blob's name
    (``replace "fc8" { name: "fc8_new" }``: the readers of ``fc8`` still read it), unless
    it gives its own ``top``."""
    old, new = name_of(x), name_of(body)
    if old is None or new is None or old == new or body.fields("top") or x.fields("top"):
        return body
    from ..layers import REGISTRY

    tv = body.scalar("type") or x.scalar("type")
    kind = REGISTRY.get(str(tv)) if tv is not None else None
    if kind is not None and kind.tops.min == 0:
        return body
    return add_field(body, "top", s.Scalar(old, "string", body.span))


def _rewire_fields(x: s.Block, body: s.Block, keep_type: bool) -> s.Block:
    """`replace`: the old layer's wiring (unless the body sets it) plus the body's fields."""
    set_keys = {f.key for f in fields_of(body)}
    items: list[s.Item] = []
    placed: set[str] = set()
    for f in fields_of(x):
        if f.key in WIRING and f.key not in set_keys:
            items.append(f)
        elif f.key in set_keys and (f.key in WIRING or f.key == "type") and f.key not in placed:
            placed.add(f.key)
            items.extend(b for b in fields_of(body) if b.key == f.key)
    items.extend(b for b in fields_of(body) if b.key not in placed)
    if not keep_type:
        items = [i for i in items if not (isinstance(i, s.Field) and i.key == "type")]
    return s.Block(tuple(items), body.span)
