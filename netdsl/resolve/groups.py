"""Groups and repeat: expanding a body's items into flat layers.

Owns group definitions (their checks), instantiation (arguments, ``$name``, ``$bottom``,
``$top``...), name prefixing (``inst/conv``) and the wiring of an instance (its output
blob, an explicit ``top:`` renaming it, the fields copied onto its layers), ``repeat`` of
layers, and the aliases that let ``bottom: "inst"`` read an instance's output.
Expressions are evaluated by the :class:`~.expressions.Evaluator` it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TypeGuard

from .. import limits
from .. import syntax as s
from ..diagnostics import NetdslError, Span, SpecError, did_you_mean
from .common import (
    add_field,
    add_note,
    head_span,
    is_layer,
    layer_of,
    map_blobs,
    misplaced,
    name_of,
    strs,
    tops_of,
)
from .expressions import Binding, Evaluator, Hook, Scope

#: The defaults of the GROUP_DEPTH and LAYERS limits (``limits.py``; NETDSL_MAX_... raise them).
MAX_DEPTH = limits.LIMITS["GROUP_DEPTH"].default
MAX_LAYERS = limits.LIMITS["LAYERS"].default

COMMON = ("devices", "phase", "include", "exclude")
PHASE_KEYS = ("phase", "include", "exclude")
RESERVED = ("name", "type", "bottom", "bottoms", "top", "tops")


class Chain:
    """The blob an omitted bottom reads (the previous layer's first top; after a run of
    ``input {}`` blocks, the first of them, as ``build`` reads it)."""

    __slots__ = ("cur", "fill", "lead", "after_input")

    def __init__(self, cur: str | None, fill: bool = False, lead: str | None = None) -> None:
        self.cur = cur
        self.fill = fill  # insert bodies: write the defaults into the layers
        #: a group body: the instance's bottom, written into its first layer if it omits one
        self.lead = lead
        self.after_input = False  # the last item was an input {} block


class Inst:
    """The group instance whose body is being expanded (plain slots: made per instance)."""

    __slots__ = ("name", "group", "locals")

    def __init__(self, name: str, group: str, local_names: frozenset[str]) -> None:
        self.name = name
        self.group = group
        self.locals = local_names


class Ctx:
    """Where a body is being expanded: its instance, notes, chain and kind of body."""

    __slots__ = ("inst", "notes", "chain", "where")

    def __init__(self, inst: Inst | None, notes: tuple[s.Note, ...], chain: Chain,
                 where: str) -> None:
        self.inst = inst
        self.notes = notes
        self.chain = chain
        self.where = where  # "file" | "group" | "insert"


def check_group(g: s.GroupDef) -> None:
    """A group definition's own errors: a reserved or repeated parameter name."""
    seen: set[str] = set()
    for p in g.params:
        if p.name in RESERVED:
            raise SpecError(f"'{p.name}' cannot be a group parameter: ${p.name} is "
                            "already the instance's", p.span,
                            "pick another name")
        if p.name in seen:
            raise SpecError(f"parameter '{p.name}' is listed twice", p.span)
        seen.add(p.name)


class Expander:
    """Expands bodies into layers; keeps what instances leave behind (aliases, units)."""

    def __init__(self, ev: Evaluator, groups: Mapping[str, s.GroupDef]) -> None:
        self.ev = ev
        self.groups = groups
        self.aliases: dict[str, str] = {}  # group instance name -> its output blob
        self.instances: list[str] = []  # group names, outermost first
        self.layers = 0
        self.max_layers = limits.value("LAYERS", MAX_LAYERS)
        self.max_depth = limits.value("GROUP_DEPTH", MAX_DEPTH)
        self._locals_cache: dict[int, frozenset[str]] = {}
        # id(layer field) -> (field, top-level instance that made it), for imports.merge
        self.units: dict[int, tuple[s.Field, str]] = {}

    def expand(self, items: Sequence[s.Item], scope: Scope, ctx: Ctx,
               out: list[s.Field], file_level: bool = False) -> None:
        """Expand a body's items (file, group, repeat or insert body) into `out`."""
        if not file_level:
            scope = self.ev.local_scope(items, scope)
        for it in items:
            if isinstance(it, s.Field):
                if it.key == "layer":
                    self.layer(it, scope, ctx, out)
                elif ctx.where != "file":
                    what = "a group body" if ctx.where == "group" else "an insert body"
                    raise SpecError(f"{what} holds only layers; '{it.key}' is not a layer",
                                    it.key_span, "write layer { ... } here")
                else:
                    val = self.ev.eval(it.value, scope)
                    self.ev.check_size(val, it.span)
                    f = s.Field(it.key, val, it.span, it.key_span, it.notes + ctx.notes)
                    out.append(f)
                    if f.key == "input" and isinstance(f.value, s.Block) and name_of(f.value):
                        if not ctx.chain.after_input:  # a layer after inputs reads the first
                            ctx.chain.cur = name_of(f.value)
                        ctx.chain.after_input = True
            elif isinstance(it, s.Repeat):
                for sc, note in self.ev.iterations(it, scope):
                    sub = Ctx(ctx.inst, (note,) + ctx.notes, ctx.chain, ctx.where)
                    try:
                        self.expand(it.body.items, sc, sub, out)
                    except NetdslError as e:
                        raise add_note(e, note) from None
            elif isinstance(it, s.Let):
                continue
            elif not file_level:
                where = {"group": "in a group body", "insert": "in an insert body"}.get(
                    ctx.where, "inside a repeat")
                raise misplaced(it, where)

    def layer(self, f: s.Field, scope: Scope, ctx: Ctx, out: list[s.Field]) -> None:
        if not isinstance(f.value, s.Block):
            raise SpecError("'layer' must be a block { ... }", f.value.span)
        body = f.value
        tf = body.first("type")
        group, pos = self.group_for(tf, scope) if tf is not None else (None, ())
        if group is not None:
            self.instance_from_syntax(f, body, group, pos, scope, ctx, out)
            return
        hook = self.wiring_hook(ctx.inst) if ctx.inst else None
        block = self.ev.eval_block(body, scope, hook)
        if ctx.chain.fill:
            block = _fill_defaults(block, ctx.chain.cur)
        elif ctx.chain.lead is not None:
            block = _lead_bottom(block, ctx.chain.lead)
        self.emit(s.Field("layer", block, f.span, f.key_span, f.notes + ctx.notes), ctx, out)

    def emit(self, f: s.Field, ctx: Ctx, out: list[s.Field]) -> None:
        self.layers += 1
        if self.layers > self.max_layers:
            raise SpecError(f"runaway expansion: more than {self.max_layers} layers", f.span,
                            "check repeat counts and groups that instantiate each other, "
                            "or raise NETDSL_MAX_LAYERS=N")
        assert isinstance(f.value, s.Block)
        tops = tops_of(f.value)
        if tops:
            ctx.chain.cur = tops[0]
        ctx.chain.lead, ctx.chain.after_input = None, False
        out.append(f)

    def group_for(self, tf: s.Field,
                  scope: Scope) -> tuple[s.GroupDef | None, tuple[s.Value, ...]]:
        v = tf.value
        if isinstance(v, s.Call):
            g = self.groups.get(v.func)
            if g is None:
                hint = did_you_mean(v.func, self.groups)
                known = ", ".join(self.groups) or "none"
                raise SpecError(f"unknown group '{v.func}'", head_span(v.span, v.func),
                                hint or f"defined groups: {known}")
            return g, v.args
        if isinstance(v, s.Scalar) and v.kind in ("word", "string") and "${" not in str(v.value):
            return self.groups.get(str(v.value)), ()
        val = self.ev.eval(v, scope)
        if isinstance(val, s.Scalar) and val.kind in ("word", "string"):
            return self.groups.get(str(val.value)), ()
        return None, ()

    def wiring_hook(self, inst: Inst) -> Hook:
        """Prefix a group body's literal names, tops and local bottoms with the instance."""
        def hook(f: s.Field, val: s.Value) -> s.Value:
            if f.key not in ("name", "top", "bottom"):
                return val
            raws = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
            vals = val.items if isinstance(val, s.ListValue) else (val,)
            if len(raws) != len(vals):
                return val
            new: list[s.Value] = []
            for r, v in zip(raws, vals, strict=True):
                if _is_literal_name(r) and isinstance(v, s.Scalar) \
                        and (f.key != "bottom" or str(v.value) in inst.locals):
                    v = s.Scalar(f"{inst.name}/{v.value}", "string", v.span)
                new.append(v)
            return s.ListValue(tuple(new), val.span) if isinstance(val, s.ListValue) else new[0]
        return hook

    def locals_of(self, g: s.GroupDef) -> frozenset[str]:
        """Names and tops a group body writes as plain literals (its local names)."""
        hit = self._locals_cache.get(id(g))
        if hit is not None:
            return hit
        found: set[str] = set()

        def scan(items: Sequence[s.Item]) -> None:
            for it in items:
                if isinstance(it, s.Repeat):
                    scan(it.body.items)
                elif isinstance(it, s.Field) and (body := layer_of(it)) is not None:
                    for f in body.items:
                        if isinstance(f, s.Field) and f.key in ("name", "top"):
                            vals = f.value.items if isinstance(f.value, s.ListValue) else (f.value,)
                            found.update(str(v.value) for v in vals if _is_literal_name(v))
        scan(g.body.items)
        res = frozenset(found)
        self._locals_cache[id(g)] = res
        return res

    def instance_from_syntax(self, f: s.Field, body: s.Block, group: s.GroupDef,
                             pos: tuple[s.Value, ...], scope: Scope, ctx: Ctx,
                             out: list[s.Field]) -> None:
        hook = self.wiring_hook(ctx.inst) if ctx.inst else None
        fields: list[s.Field] = []
        for it in body.items:
            if not isinstance(it, s.Field):
                raise misplaced(it, f"in an instance of group '{group.name}' (it takes "
                                    "only fields)")
            if it.key == "type":
                continue
            val = self.ev.eval(it.value, scope)
            self.ev.check_size(val, it.span)
            if hook is not None:
                val = hook(it, val)
            fields.append(s.Field(it.key, val, it.span, it.key_span))
        args = [self.ev.eval(a, scope) for a in pos]
        for a in args:
            self.ev.check_size(a, a.span)
        self.instantiate(f, group, fields, args, ctx, out)

    def instantiate(self, f: s.Field, group: s.GroupDef, fields: list[s.Field],
                    pos: list[s.Value], ctx: Ctx, out: list[s.Field],
                    rename_to: str | None = None) -> None:
        """Expand one group instance whose own fields are already evaluated."""
        g = group.name
        name_f = next((x for x in fields if x.key == "name"), None)
        if name_f is None:
            raise SpecError(f"an instance of group '{g}' needs a name", f.span,
                            'add name: "..." (its layers are called name/...)')
        if not (isinstance(name_f.value, s.Scalar) and name_f.value.kind in ("string", "word")):
            raise SpecError("the instance's name must be a string", name_f.value.span)
        name = str(name_f.value.value)
        bottoms = [b for x in fields if x.key == "bottom" for b in strs(x.value)]
        tops = [t for x in fields if x.key == "top" for t in strs(x.value)]
        params = {p.name: p for p in group.params}
        args: dict[str, s.Value] = {}
        if len(pos) > len(params):
            raise SpecError(f"group '{g}' takes {len(params)} argument(s), got {len(pos)}",
                            f.span, f"its parameters are: {_plist(group)}")
        for v, p in zip(pos, group.params, strict=False):
            args[p.name] = v
        common: list[s.Field] = []
        for x in fields:
            if x.key in ("name", "bottom", "top"):
                continue
            if x.key in params:
                if x.key in args:
                    raise SpecError(f"argument '{x.key}' of group '{g}' is given twice",
                                    x.key_span)
                args[x.key] = x.value
            elif x.key in COMMON:
                common.append(x)
            else:
                hint = did_you_mean(x.key, list(params) + list(COMMON))
                raise SpecError(f"group '{g}' has no parameter '{x.key}'", x.key_span,
                                hint or f"its parameters are: {_plist(group)}")
        missing = [p.name for p in group.params if p.name not in args and p.default is None]
        if missing:
            listed = ", ".join(f"'{m}'" for m in missing)
            raise SpecError(f"instance '{name}' of group '{g}' is missing argument(s) {listed}",
                            f.span, f"add {missing[0]}: ... to the instance")
        if len(self.instances) >= self.max_depth:
            chain = " -> ".join(self.instances[-4:] + [g])
            raise SpecError(f"runaway expansion: groups nested more than {self.max_depth} "
                            f"deep (... -> {chain})", f.span,
                            "a group probably instantiates itself, or raise "
                            "NETDSL_MAX_GROUP_DEPTH=N")

        sc = Scope(self.ev.globals)
        for p in group.params:
            if p.name in args:
                sc.vars[p.name] = Binding(p.name, value=args[p.name])
            else:
                sc.vars[p.name] = Binding(p.name, expr=p.default, scope=sc, span=p.span)
        nspan = name_f.value.span
        sc.vars["name"] = Binding("name", value=s.Scalar(name, "string", nspan))
        first = bottoms[0] if bottoms else ctx.chain.cur
        if first is not None:
            sc.vars["bottom"] = Binding("bottom", value=s.Scalar(first, "string", f.span))
        else:
            def no_bottom(at: Span) -> NetdslError:
                return SpecError(f"instance '{name}' of group '{g}' has no bottom", at,
                                 f'give the instance a bottom: layer {{ name: "{name}" '
                                 f'type: {g} bottom: "..." }}')
            sc.vars["bottom"] = Binding("bottom", fail=no_bottom)
        sc.vars["bottoms"] = Binding("bottoms", value=s.ListValue(
            tuple(s.Scalar(b, "string", f.span) for b in bottoms), f.span))
        top_list = tops or [name]
        sc.vars["top"] = Binding("top", value=s.Scalar(top_list[0], "string", f.span))
        sc.vars["tops"] = Binding("tops", value=s.ListValue(
            tuple(s.Scalar(t, "string", f.span) for t in top_list), f.span))

        note = (f"expanded from instance '{name}' of group '{g}'", f.span)
        # the body's first layer reads the instance's bottom (not the previous layer's
        # output, which build would give it) unless it names its own
        inner = Ctx(Inst(name, g, self.locals_of(group)), (note,) + ctx.notes,
                    Chain(first, lead=first if bottoms else None), "group")
        produced: list[s.Field] = []
        self.instances.append(g)
        try:
            self.expand(group.body.items, sc, inner, produced)
        except NetdslError as e:
            raise add_note(e, note) from None
        finally:
            self.instances.pop()
        if not produced:
            raise SpecError(f"group '{g}' makes no layers", f.span)
        last = produced[-1].value
        assert isinstance(last, s.Block)
        output = tops_of(last)[0] if tops_of(last) else name
        target = rename_to if rename_to is not None else (
            tops[0] if tops and tops[0] != name else None)
        if target is not None and target != output:
            if not any(isinstance(x.value, s.Block) and output in tops_of(x.value)
                       for x in produced):
                top_f = next((x for x in fields if x.key == "top"), name_f)
                raise SpecError(f"cannot name the output of instance '{name}' '{target}': its "
                                f"last layer writes '{output}', which the group does not make",
                                top_f.span)
            produced = [_rename_blob(x, output, target) for x in produced]
            output = target
        if common:
            produced = [_copy_common(x, common) for x in produced]
        self.aliases[name] = output
        if ctx.where == "file" and ctx.inst is None:
            for x in produced:
                self.units[id(x)] = (x, name)
        out.extend(produced)
        ctx.chain.cur = output
        ctx.chain.lead, ctx.chain.after_input = None, False

    # ------------------------------------------------------------------ aliases

    def effective(self, items: list[s.Field]) -> Callable[[str], str]:
        """The blob a bottom really reads: `inst` means the instance's output.

        Aliases are resolved only at the very end (an importer may still replace the
        instance), so edits look through them with this.
        """
        if not self.aliases:
            return lambda b: b
        made: set[str] = set()
        for f in items:
            body = layer_of(f)
            if body is not None:
                made.update(tops_of(body))
            elif f.key == "input" and isinstance(f.value, s.Block) and (n := name_of(f.value)):
                made.add(n)
        aliases = self.aliases
        return lambda b: aliases[b] if b in aliases and b not in made else b

    def resolve_aliases(self, items: list[s.Field]) -> list[s.Field]:
        """Rewrite `bottom: "inst"` to the instance's output wherever no layer makes "inst"."""
        eff = self.effective(items)
        out = []
        for f in items:
            if is_layer(f):
                assert isinstance(f.value, s.Block)
                nb = map_blobs(f.value, "bottom", eff)
                if nb is not f.value:
                    f = dataclasses.replace(f, value=nb)
            out.append(f)
        return out


def _is_literal_name(v: s.Value) -> TypeGuard[s.Scalar]:
    """Written as a plain literal (so local to a group body), not computed."""
    return isinstance(v, s.Scalar) and (
        v.kind == "word" or (v.kind == "string" and "${" not in str(v.value)))


def _plist(g: s.GroupDef) -> str:
    return ", ".join(p.name for p in g.params) or "(none)"


def _fill_defaults(block: s.Block, cur: str | None) -> s.Block:
    """Insert bodies: a missing bottom reads the chain, a missing top is the layer's name."""
    if not block.fields("bottom") and cur is not None:
        block = add_field(block, "bottom", s.Scalar(cur, "string", block.span))
    name = name_of(block)
    if not block.fields("top") and name is not None:
        block = add_field(block, "top", s.Scalar(name, "string", block.span))
    return block


def _lead_bottom(block: s.Block, bottom: str) -> s.Block:
    """A group's first layer without a bottom reads the instance's (unless its type takes
    no bottom, as a data layer)."""
    if block.fields("bottom"):
        return block
    from ..layers import REGISTRY

    tv = block.scalar("type")
    kind = REGISTRY.get(str(tv)) if tv is not None else None
    if kind is not None and kind.bottoms.min == 0:
        return block
    return add_field(block, "bottom", s.Scalar(bottom, "string", block.span))


def _rename_blob(f: s.Field, old: str, new: str) -> s.Field:
    b = f.value
    assert isinstance(b, s.Block)
    fn = (lambda x: new if x == old else x)  # noqa: E731
    nb = map_blobs(map_blobs(b, "bottom", fn), "top", fn)
    if not b.fields("top") and name_of(b) == old:
        nb = add_field(nb, "top", s.Scalar(new, "string", b.span))
    return f if nb is b else dataclasses.replace(f, value=nb)


def _copy_common(f: s.Field, common: list[s.Field]) -> s.Field:
    b = f.value
    assert isinstance(b, s.Block)
    add: list[s.Field] = []
    if b.first("devices") is None:
        add += [c for c in common if c.key == "devices"]
    if not any(b.first(k) is not None for k in PHASE_KEYS):
        add += [c for c in common if c.key in PHASE_KEYS]
    if not add:
        return f
    return dataclasses.replace(f, value=s.Block(b.items + tuple(add), b.span))

