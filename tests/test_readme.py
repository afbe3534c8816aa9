"""The README opens with the two set-up commands and embeds an up-to-date reference."""

from __future__ import annotations

from netdsl.reference import full_reference, splice
from tests.shared import ROOT


def test_reference_section_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert splice(readme, full_reference()) == readme, (
        "README reference is stale: run python tools/gen_reference.py")


def test_readme_opens_with_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0].startswith("# ")
    fence = lines.index("```bash")
    block = lines[fence + 1: lines.index("```", fence + 1)]
    assert len(block) == 2
    assert block[0].startswith("pip install torch==2.13.0") and "netdsl " in block[0]
    assert "pytest" in block[1]


def test_fork_types_say_so_in_their_doc_and_their_fork() -> None:
    """The reference lists fork types apart, by fork: a type whose docstring says it is
    from a fork names that fork, and only those do."""
    from netdsl.layers import TYPES

    for name, t in TYPES.items():
        says = "fork:" in (type(t).__doc__ or "").split("\n\n")[0]
        assert says == bool(t.fork), name
