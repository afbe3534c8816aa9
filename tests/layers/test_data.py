"""Data layers lower to placeholders: the compiler feeds their tops."""

from __future__ import annotations

import pytest

from netdsl.layers.base import Role

from .helpers import kind, params


@pytest.mark.parametrize("name", ["Input", "Data", "ImageData", "MemoryData", "HDF5Data"])
def test_data_layers_are_fed_not_lowered(name: str) -> None:
    """The compiled net takes a data layer's tops as its inputs: the layer has no kernel."""
    k = kind(name)
    assert k.is_input and k.is_data and k.role is Role.INPUT
    with pytest.raises(NotImplementedError, match="no torch lowering"):
        k.lower(params(name), (), ((1, 3, 4, 4),))
