"""Data layers lower to placeholders: the compiler feeds their tops."""

from __future__ import annotations

import pytest

from .helpers import kind, params


@pytest.mark.parametrize("name", ["Input", "Data", "ImageData", "MemoryData", "HDF5Data"])
def test_placeholder_module_is_not_callable(name: str) -> None:
    k = kind(name)
    m = k.lower(params(name), (), ((1, 3, 4, 4),))
    assert list(m.parameters()) == []
    with pytest.raises(RuntimeError, match="fed by the compiler"):
        m()
