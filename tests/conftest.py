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
