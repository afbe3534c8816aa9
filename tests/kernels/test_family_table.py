"""The family table of netdsl/kernels/__init__.py names every kernel module, and only those."""

from __future__ import annotations

import pkgutil
import re

import netdsl.kernels


def test_the_family_table_lists_every_kernel_module() -> None:
    doc = netdsl.kernels.__doc__ or ""
    listed = re.findall(r"^``(\w+)`` {2,}\S", doc, flags=re.MULTILINE)  # the table's rows
    modules = sorted(m.name for m in pkgutil.iter_modules(netdsl.kernels.__path__)
                     if not m.name.startswith("_"))
    assert sorted(listed) == modules
    assert len(listed) == len(set(listed))
