"""Imports: loading the import tree, import cycles, and merging a file over the files it
imports (the importer's fields override; see the package docstring for the rules).

``import "x.net"`` is relative to the importing file's folder. The lets and group
definitions of the whole tree are collected here too, since they are shared by it: the
importer's override the imported ones everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

from .. import limits
from .. import syntax as s
from ..caffe_compat import upgrade
from ..diagnostics import NetdslError, Span, SpecError, hide_source
from ..parse import parse_file
from .common import fields_of, name_of
from .groups import check_group

Loader = Callable[[str, Span], s.File]

_FILE_CACHE: dict[str, tuple[tuple[int, int], s.File]] = {}


def default_loader(path: str, span: Span) -> s.File:
    """Parse and upgrade an imported file, cached by path and modification time."""
    try:
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size)
    except OSError:
        key = (0, 0)
    hit = _FILE_CACHE.get(path)
    if hit is not None and hit[0] == key and key != (0, 0):
        return hit[1]
    file = upgrade(parse_file(path))
    _FILE_CACHE[path] = (key, file)
    return file


@dataclass
class Node:
    """A loaded file and, in order, its imports with the files they loaded."""

    file: s.File
    imports: list[tuple[s.Import, Node]]


def show_path(path: str, root_dir: str) -> str:
    """A path as error messages show it: relative to the root file's folder."""
    if path.startswith("<"):
        return path
    return os.path.relpath(os.path.abspath(path), root_dir)


#: Imports nested deeper than this, or more of them in a tree (a diamond counts each
#: path), are refused: ``import`` is for sharing definitions, not for building nets.
#: The defaults of the IMPORT_DEPTH and IMPORTS limits (``limits.py``).
MAX_IMPORT_DEPTH = limits.LIMITS["IMPORT_DEPTH"].default
MAX_IMPORTS = limits.LIMITS["IMPORTS"].default


@dataclass
class _Loading:
    """One import tree's loading: each file loaded once (a diamond's shared file too),
    the import statements followed and the bytes of the files read, against the limits."""

    load: Loader
    show: Callable[[str], str]
    files: dict[str, s.File]
    count: int = 0
    size: int = 0
    max_depth: int = MAX_IMPORT_DEPTH
    max_count: int = MAX_IMPORTS
    max_size: int = 0


def load_tree(file: s.File, load: Loader, root_dir: str) -> Node:
    """`file` and everything it imports, loaded with `load(absolute path, span)`; a file
    imported along several paths is loaded once."""
    state = _Loading(load, lambda p: show_path(p, root_dir), {},
                     max_depth=limits.value("IMPORT_DEPTH", MAX_IMPORT_DEPTH),
                     max_count=limits.value("IMPORTS", MAX_IMPORTS),
                     max_size=limits.value("IMPORT_BYTES"))
    return _load(file, state, [os.path.abspath(file.path)], [])


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` is in ``folder``'s tree."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def tree_outside(node: Node) -> list[str]:
    """The files of the tree imported from outside their importer's folder tree, each
    once, in order."""
    out: list[str] = []
    todo = [node]
    while todo:
        n = todo.pop()
        folder = os.path.dirname(n.file.path)
        for _, child in n.imports:
            if not inside(child.file.path, folder) and child.file.path not in out:
                out.append(child.file.path)
        todo.extend(child for _, child in reversed(n.imports))
    return out


def _load(file: s.File, state: _Loading, stack: list[str], via: list[s.Import]) -> Node:
    show = state.show
    node = Node(file, [])
    for item in file.items:
        if not isinstance(item, s.Import):
            continue
        path = os.path.abspath(os.path.join(os.path.dirname(file.path), item.path))
        state.count += 1
        if len(stack) > state.max_depth or state.count > state.max_count:
            deep = len(stack) > state.max_depth
            what = (f"imports nested more than {state.max_depth} deep" if deep
                    else f"more than {state.max_count} imports in one spec (each path "
                    "counted)")
            env = "NETDSL_MAX_IMPORT_DEPTH" if deep else "NETDSL_MAX_IMPORTS"
            # reported in the spec itself, at the import that leads there
            notes = [(f"the limit is passed where '{show(item.span.path)}' imports "
                      f"'{item.path}'", item.span)] if via else []
            raise SpecError(f"too many imports: {what}", (via[0] if via else item).span,
                            f"import from fewer, flatter files, or raise {env}=N", notes)
        if path in stack:
            start = stack.index(path)
            chain = " -> ".join(show(p) for p in stack[start:] + [path])
            # reported where the cycle starts: in the file that is imported again
            steps = via[start:] + [item]
            notes = [(f"'{show(imp.span.path)}' imports '{imp.path}'", imp.span)
                     for imp in steps[1:]]
            raise SpecError(f"import cycle: {chain}", steps[0].span,
                            "a file cannot import itself, directly or through others",
                            notes)
        outside = not inside(path, os.path.dirname(file.path))
        if outside:
            hide_source(path)
        try:
            child = state.files.get(path) or _read(state, path, item)
        except NetdslError as e:
            if outside and e.span.path == path and e.span.line > 0:  # where, never what
                raise SpecError(f"cannot import \"{item.path}\": it is outside this "
                                f"file's folder and is not a valid spec (line "
                                f"{e.span.line})", item.span,
                                "check that the path names a .net or prototxt file") from None
            if e.span.line > 0 and e.span.path == path:
                raise  # an error inside the imported file: keep its location
            if e.span == item.span:
                raise
            raise SpecError(f"cannot import \"{item.path}\": {e.message}", item.span,
                            "import paths are relative to the importing file's folder"
                            ) from None
        node.imports.append((item, _load(child, state, stack + [path], via + [item])))
    return node


def _read(state: _Loading, path: str, item: s.Import) -> s.File:
    """Load an imported file (the first time the tree names it), within IMPORT_BYTES."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # not a file on disk (a test's loader), or an error the loader reports
    if state.size + size > state.max_size:
        raise limits.exceeded("IMPORT_BYTES", f"imported files of {state.size + size:,} "
                              "bytes in all", state.max_size, item.span)
    child = state.load(path, item.span)
    state.size += size
    state.files[path] = child
    return child


def collect(node: Node) -> tuple[dict[str, s.Let], dict[str, s.GroupDef]]:
    """Lets and groups of the whole tree, imported first, the importer overriding."""
    lets: dict[str, s.Let] = {}
    groups: dict[str, s.GroupDef] = {}
    _collect(node, lets, groups)
    return lets, groups


def _collect(node: Node, lets: dict[str, s.Let], groups: dict[str, s.GroupDef]) -> None:
    for _, child in node.imports:
        _collect(child, lets, groups)
    own_lets: dict[str, s.Let] = {}
    own_groups: dict[str, s.GroupDef] = {}
    for item in node.file.items:
        if isinstance(item, s.Let):
            if item.name in own_lets:
                raise SpecError(f"variable '{item.name}' is defined twice", item.span,
                                notes=[("first defined here", own_lets[item.name].span)])
            own_lets[item.name] = item
        elif isinstance(item, s.GroupDef):
            if item.name in own_groups:
                raise SpecError(f"group '{item.name}' is defined twice", item.span,
                                notes=[("first defined here", own_groups[item.name].span)])
            check_group(item)
            own_groups[item.name] = item
    lets.update(own_lets)
    groups.update(own_groups)


# --------------------------------------------------------------------------- merging


def _phase(block: s.Block) -> str | None:
    v = block.scalar("phase")
    if v is not None:
        return str(v).upper()
    inc = block.first("include")
    if inc is not None and isinstance(inc.value, s.Block):
        p = inc.value.scalar("phase")
        if p is not None:
            return str(p).upper()
    return None


def _matches(f: s.Field, key: str | None, slots: list[list[s.Field]], from_base: list[bool],
             prefix: bool) -> list[int]:
    """Imported slots that `f` overrides: same key and name (or the instance's layers)."""
    over = f.value
    assert isinstance(over, s.Block)
    if f.key == "layer" and key is None:
        return []
    matches: list[int] = []
    bodies: dict[int, s.Block] = {}
    for i, slot in enumerate(slots):
        if not from_base[i] or len(slot) != 1:
            continue
        g = slot[0]
        if g.key != f.key or not isinstance(g.value, s.Block):
            continue
        name = name_of(g.value)
        if name == key or (prefix and name is not None and name.startswith(f"{key}/")):
            matches.append(i)
            bodies[i] = g.value
    phase = _phase(over)
    if phase is None or not matches:
        return matches
    same = [i for i in matches if _phase(bodies[i]) == phase]
    return same or [i for i in matches if _phase(bodies[i]) is None]


def merge(base: list[s.Field], over: list[s.Field],
          units: Mapping[int, tuple[s.Field, str]] | None = None,
          instances: Container[str] = ()) -> list[s.Field]:
    """The importer's fields `over` the imported `base` (see the package docstring).

    `units` tags the importer's layers made by a top-level group instance with that
    instance's name, so that re-instantiating an imported instance (or giving a plain
    layer its name) replaces all of its layers (``inst/...``) at their position.
    """
    if not base:
        return list(over)
    slots: list[list[s.Field]] = [[f] for f in base]
    from_base = [True] * len(base)
    unit_slot: dict[str, int] = {}
    scalars: dict[str, list[int]] = {}  # the base's non-block fields by key, in order
    for i, g in enumerate(base):
        if not isinstance(g.value, s.Block):
            scalars.setdefault(g.key, []).append(i)
    for f in over:
        unit = None
        if units is not None and f.key == "layer":
            hit = units.get(id(f))
            unit = hit[1] if hit is not None and hit[0] is f else None
        if unit is not None and unit in unit_slot:
            slots[unit_slot[unit]].append(f)
            continue
        if isinstance(f.value, s.Block):
            key = unit if unit is not None else name_of(f.value)
            prefix = unit is not None or key in instances
            matches = _matches(f, key, slots, from_base, prefix)
            if matches and f.key == "layer":
                slots[matches[0]] = [f]
                from_base[matches[0]] = False
                for m in matches[1:]:
                    slots[m] = []
                if unit is not None:
                    unit_slot[unit] = matches[0]
                continue
            if matches:
                for m in matches:
                    g = slots[m][0]
                    assert isinstance(g.value, s.Block)
                    merged = s.Block(tuple(merge(fields_of(g.value), fields_of(f.value))),
                                     g.value.span)
                    slots[m] = [dataclasses.replace(g, value=merged)]
                continue
        else:  # the base's own fields of this key, once: later ones append (linear)
            matches = [i for i in scalars.pop(f.key, []) if from_base[i] and len(slots[i]) == 1]
            if matches:
                slots[matches[0]] = [f]
                from_base[matches[0]] = False
                for m in matches[1:]:
                    slots[m] = []
                continue
        slots.append([f])
        from_base.append(False)
    return [f for slot in slots for f in slot]
