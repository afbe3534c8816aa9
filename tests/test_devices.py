"""Devices named on the command line or in the API: a device this machine or this torch
build lacks is a diagnostic that says which devices there are."""

from __future__ import annotations

import pytest
import torch

import netdsl
from netdsl.compiler import available_devices, usable_device
from netdsl.diagnostics import PlacementError
from tests.shared import ROOT


@pytest.mark.parametrize("name", ["xla", "meta", "tpu:3", "cuda:99", "mps:7", "gpu"])
def test_devices_this_machine_lacks_are_refused(name: str) -> None:
    with pytest.raises(PlacementError) as e:
        usable_device(name)
    assert name in e.value.message
    assert e.value.hint == f"the devices here: {', '.join(available_devices())}"


def test_what_there_is_is_accepted() -> None:
    assert available_devices()[0] == "cpu"
    for name in available_devices():
        assert usable_device(name) == torch.device(name)


def test_compile_refuses_a_missing_device_before_building() -> None:
    with pytest.raises(PlacementError, match="'meta' is not available"):
        netdsl.compile(ROOT / "specs" / "alexnet_small.net", "test", {"gpu:0": "meta"})
    if not torch.cuda.is_available():
        with pytest.raises(PlacementError, match="has no CUDA|no such CUDA device"):
            netdsl.compile(ROOT / "specs" / "alexnet_small.net", "test", "cuda")
