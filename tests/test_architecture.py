"""The shape of the code, checked: rooms of a readable size, no import cycles, no layer
type named outside its own file, and nothing before lowering imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.layers import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("netdsl",)
MAX_LINES = 600

#: Modules that may spell layer type names: the layer files themselves, the registry,
#: the reference-docs generator, and Caffe's own wire format (caffe.proto's V1 layer
#: enum and the V0/V1 upgrade tables of upgrade_proto.cpp, which list every Caffe type,
#: netdsl's or not).
NAMES_ALLOWED = ("netdsl/layers/", "netdsl/reference.py", "netdsl/caffe_pb.py")


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@pytest.mark.parametrize("path", _sources(), ids=_rel)
def test_module_line_budget(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{_rel(path)} has {lines} lines (budget {MAX_LINES})"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _all_lists(tree: ast.Module) -> set[int]:
    """String constants inside ``__all__ = [...]``: they name Python objects."""
    ids = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            ids.update(id(c) for c in ast.walk(node.value))
    return ids


def test_no_layer_type_is_named_outside_its_own_file() -> None:
    """A layer type's name (V2, V1 enum or alias) as a string anywhere else means some
    knowledge of that type has leaked out of netdsl/layers/: ask its hooks instead."""
    names = set(REGISTRY)
    leaks = []
    for path in _sources():
        rel = _rel(path)
        if rel.startswith(NAMES_ALLOWED):
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree) | _all_lists(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in names and id(node) not in skip):
                leaks.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not leaks, "layer types named outside netdsl/layers/:\n" + "\n".join(leaks)


def _imports(path: Path, module: str) -> set[str]:
    """Internal modules ``module`` imports, at the top or inside functions (lazy imports
    keep torch out of the front half; they are still dependencies), but not under ``if
    TYPE_CHECKING``; each with the packages that importing it runs."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    typing_only = {id(n) for st in ast.walk(tree) if isinstance(st, ast.If)
                   and isinstance(st.test, ast.Name) and st.test.id == "TYPE_CHECKING"
                   for n in ast.walk(st)}
    for st in ast.walk(tree):
        if id(st) in typing_only:
            continue
        if isinstance(st, ast.Import):
            found.update(a.name for a in st.names)
        elif isinstance(st, ast.ImportFrom):
            base = st.module or ""
            if st.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (st.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in st.names)
    out = set()
    for name in found:
        parts = name.split(".")
        if parts[0] in PACKAGES:
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def test_no_import_cycles() -> None:
    modules = {_module_name(p): p for p in _sources()}
    graph = {m: {d for d in _imports(p, m) if d in modules and d != m}
             for m, p in modules.items()}
    # A module that imports a package (its __init__) it belongs to is the usual
    # registration pattern (``from . import register``), not a cycle we made.
    for m, deps in graph.items():
        deps -= {pkg for pkg in deps if m.startswith(pkg + ".")}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter
                counter += 1
                stack.append(nxt)
                on.add(nxt)
                work.append((nxt, iter(sorted(graph[nxt]))))
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
    return out


#: What the runtime may import from netdsl: its public API (the package's own exports,
#: errors, typed sections, weight files, Caffe's binary formats, the user's files read
#: and written safely).
RUNTIME_MAY_IMPORT = {"netdsl", "netdsl.diagnostics", "netdsl.sections", "netdsl.weights",
                      "netdsl.caffe_pb", "netdsl.files"}


def test_runtime_uses_the_public_api_only() -> None:
    outside = []
    for path in sorted((ROOT / "netdsl" / "runtime").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for st in ast.walk(tree):
            names = ([a.name for a in st.names] if isinstance(st, ast.Import)
                     else [st.module or ""] if isinstance(st, ast.ImportFrom) and not st.level
                     else [])
            for name in names:
                if (name.split(".")[0] == "netdsl" and not name.startswith("netdsl.runtime")
                        and name not in RUNTIME_MAY_IMPORT):
                    outside.append(f"{_rel(path)}:{st.lineno}: {name}")
    assert not outside, "the runtime reaches past netdsl's public API:\n" + "\n".join(outside)


def test_front_half_and_placement_do_not_import_torch() -> None:
    """parse, upgrade, resolve, build, shapes and placement run without torch (so
    ``netdsl shapes`` starts fast and needs no GPU); lowering is the first to import it."""
    code = (
        "import sys; import netdsl; from netdsl.shapes import infer_shapes; "
        "from netdsl.placement import plan; "
        f"net = netdsl.load({str(ROOT / 'specs' / 'alexnet.net')!r}, 'train'); "
        "plan(net, infer_shapes(net, 2)); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_cycle_finder_finds_cycles() -> None:
    """The checker itself, on a made-up graph (so the tests above can fail)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
