"""The language reference, generated from the registry and the config dataclasses.

README.md embeds the output between ``<!-- reference:begin -->`` and
``<!-- reference:end -->``; ``python tools/gen_reference.py`` rewrites it and a test
fails when it is stale, so the reference is never written twice.
"""

from __future__ import annotations

from .fields import reference_rows
from .layers import TYPES
from .sections import DataConfig, RuntimeConfig, SolverConfig

BEGIN = "<!-- reference:begin -->"
END = "<!-- reference:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    out = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, tp, default, text in rows:
        out.append(f"| `{name}` | {_cell(tp)} | {_cell(default)} | {_cell(text)} |")
    return out


def layer_reference() -> str:
    from .build import COMMON_FIELDS, TOP_FIELDS

    lines = ["### Top-level fields", "", "| field | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in TOP_FIELDS.items()]
    lines += ["", "### Fields every layer has", "", "| field | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in COMMON_FIELDS.items()]
    lines += ["", "### Layer types", ""]
    forks: dict[str, list[str]] = {}
    for n in sorted(TYPES):
        forks.setdefault(TYPES[n].fork, []).append(n)
    lines.append("BVLC Caffe's: " + ", ".join(f"[{n}](#{n.lower()})" for n in forks.pop("", [])))
    for fork in sorted(forks):
        lines += ["", f"From {fork}: " + ", ".join(f"[{n}](#{n.lower()})" for n in forks[fork])]
    for name in sorted(TYPES):
        t = TYPES[name]
        lines += ["", f"#### {name}", "", t.doc, ""]
        facts = ([f"**fork: {t.fork}**"] if t.fork else []) + [
            f"bottoms: {t.bottoms}", f"tops: {t.tops}"]
        if t.blobs:
            facts.append("learnable blobs: " + ", ".join(f"`{b}`" for b in t.blobs))
        if t.caffe_names:
            facts.append("also spelt: " + ", ".join(f"`{c}`" for c in t.caffe_names))
        lines.append(" · ".join(facts))
        rows = reference_rows(t.Params)
        if rows:
            lines += [""] + _table(rows)
    return "\n".join(lines)


def solver_reference() -> str:
    rows = [r for r in reference_rows(SolverConfig)]
    return "\n".join(["### Solver fields (`solver { ... }`)", ""] + _table(rows))


def full_reference() -> str:
    data = "\n".join(["### Data fields (`data { ... }`)", ""] + _table(reference_rows(DataConfig)))
    runtime = "\n".join(["### Runtime fields (`runtime { ... }`)", ""]
                        + _table(reference_rows(RuntimeConfig)))
    return "\n\n".join([layer_reference(), solver_reference(), data, runtime]) + "\n"


def splice(readme: str, reference: str) -> str:
    """README text with the generated reference put between the markers."""
    head, sep, rest = readme.partition(BEGIN)
    if not sep:
        raise ValueError("README has no reference markers")
    _, sep2, tail = rest.partition(END)
    if not sep2:
        raise ValueError("README has no reference end marker")
    return f"{head}{BEGIN}\n{reference}{END}{tail}"
