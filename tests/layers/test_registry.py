"""Properties every registered layer type must have."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from netdsl.fields import field_doc
from netdsl.layers import REGISTRY, TYPES, LayerType
from netdsl.layers.base import Role

NEW_TYPES = {
    "ReLU": ("RELU",), "PReLU": (), "Sigmoid": ("SIGMOID",), "TanH": ("TANH",),
    "AbsVal": ("ABSVAL",), "Power": ("POWER",), "ELU": (), "BNLL": ("BNLL",),
    "Dropout": ("DROPOUT",), "Softmax": ("SOFTMAX",), "SoftmaxWithLoss": ("SOFTMAX_LOSS",),
    "EuclideanLoss": ("EUCLIDEAN_LOSS",), "Accuracy": ("ACCURACY",), "Concat": ("CONCAT",),
    "Eltwise": ("ELTWISE",), "Flatten": ("FLATTEN",), "Reshape": (), "Slice": ("SLICE",),
    "Split": ("SPLIT",), "Silence": ("SILENCE",), "BatchNorm": (), "Scale": (), "Bias": (),
    "Deconvolution": ("DECONVOLUTION",), "DummyData": ("DUMMY_DATA",),
}


@pytest.mark.parametrize("name, v1", sorted(NEW_TYPES.items()))
def test_registered_with_caffe_names(name: str, v1: tuple[str, ...]) -> None:
    k = TYPES[name]
    assert k.name == name and k.caffe_names == v1
    assert all(REGISTRY[n] is k for n in v1)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_type_lowers_and_documents_its_fields(name: str) -> None:
    k = TYPES[name]
    if k.role in (Role.INPUT, Role.SINK):  # fed by the caller, or computing nothing
        assert type(k).lower is LayerType.lower, f"{name} is fed or silent, yet lowers"
    else:
        assert type(k).lower is not LayerType.lower, f"{name} has no lower()"
    assert k.doc
    for f in dataclasses.fields(k.Params):
        assert field_doc(f), f"{name}.{f.name} has no doc"


def _type_argument(cls: type) -> object:
    """The class in the ``LayerType[...]`` (or ``DataLayer[...]``) that ``cls`` subclasses."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and not isinstance(args[0], typing.TypeVar):
                return args[0]
    return None


@pytest.mark.parametrize("name", sorted(TYPES))
def test_type_argument_is_the_params_class(name: str) -> None:
    """``LayerType[P]`` is what mypy checks the hooks' ``p`` against; ``Params`` is what
    build constructs: they must be one class."""
    k = TYPES[name]
    assert _type_argument(type(k)) is k.Params


@pytest.mark.parametrize("name", sorted(TYPES))
def test_fillers_cover_the_blobs(name: str) -> None:
    k = TYPES[name]
    try:
        p = k.Params()
    except TypeError:  # num_output is required
        p = k.Params(num_output=1)
    assert set(k.fillers(p)) >= set(k.blobs)
