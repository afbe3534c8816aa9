"""Helpers shared by the test modules: where the shared Caffe reference data is."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_CAFFE = ROOT.parent / "shared" / "caffe"


def caffe_files(kind: str = "nets") -> list[Path]:
    """Shared prototxt files (empty when the folder is absent; tests then skip)."""
    folder = SHARED_CAFFE / "prototxt"
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.prototxt"))
    solver = [f for f in files if f.name.endswith("solver.prototxt")]
    return solver if kind == "solvers" else [f for f in files if f not in solver]


def caffe_params(kind: str = "nets") -> list:
    files = caffe_files(kind)
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason="shared caffe data absent"))]
    return [pytest.param(f, id=f.name) for f in files]


#: --input shapes for shared nets whose data layers read their shape from a database.
DB_INPUTS = {
    "mnist__lenet_train_test.prototxt": {"data": (1, 28, 28)},
    "mnist_v1__lenet_train_test.prototxt": {"data": (1, 28, 28)},
    "cifar10__cifar10_quick_train_test.prototxt": {"data": (3, 32, 32)},
    "bvlc_alexnet__train_val.prototxt": {"data": (3, 227, 227)},
    "bvlc_reference_caffenet__train_val.prototxt": {"data": (3, 227, 227)},
    "bvlc_googlenet__train_val.prototxt": {"data": (3, 224, 224)},
}
