"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def dynamo() -> Iterator[dict[str, Any]]:
    """A counting ``torch.compile`` backend and dynamo's counters, reset around the test:
    ``graphs`` holds each fx graph dynamo hands over (one per captured frame)."""
    import torch
    from torch import fx
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    graphs: list[fx.GraphModule] = []

    def backend(gm: fx.GraphModule, example_inputs: list[Any]) -> Any:
        graphs.append(gm)
        return gm.forward

    yield {"backend": backend, "graphs": graphs, "counters": counters}
    torch._dynamo.reset()
