"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared import SHARED_CAFFE


@pytest.fixture
def shared_caffe() -> Path:
    if not (SHARED_CAFFE / "prototxt").is_dir():
        pytest.skip("shared caffe reference data not present")
    return SHARED_CAFFE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu``-marked tests run where CUDA is, and skip elsewhere (CI has no GPU)."""
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
