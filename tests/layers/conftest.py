"""Layer tests: seed torch's global generator for the tests that use it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _seed() -> None:
    import torch

    torch.manual_seed(0)
