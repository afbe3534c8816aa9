"""Regenerate the language reference inside README.md from the layer registry."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdsl.reference import full_reference, splice  # noqa: E402


def main() -> int:
    readme = ROOT / "README.md"
    readme.write_text(splice(readme.read_text(), full_reference()))
    print(f"wrote the reference into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
