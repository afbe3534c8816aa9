"""The generic field converter (netdsl/fields.py): Caffe's enums by name and by number.

Caffe's numbers come from the protos themselves: BVLC/caffe src/caffe/proto/caffe.proto,
weiliu89/caffe (ssd branch) for the SSD messages, alexgkendall/caffe-segnet for
BNParameter. Several do not count from 0 (ReductionOp, HingeLossParameter.Norm, the SSD
CodeType and ResizeParameter enums), so a number must never be read as a position.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from pathlib import Path
from typing import Any

import pytest

from netdsl import syntax as s
from netdsl.diagnostics import Span, SpecError
from netdsl.fields import CaffeEnum, convert, convert_value
from netdsl.layers import TYPES
from netdsl.layers.base import FillerType
from tests.layers.helpers import params_from_text
from tests.layers.roundtrip import convert_both_ways, inputs

SPAN = Span("f.net", 3, 7)


def scalar(v: object, kind: str) -> s.Scalar:
    return s.Scalar(v, kind, SPAN)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the mechanism


class Norm(CaffeEnum):
    L1 = 1
    L2 = 2


def test_a_caffe_enum_reads_caffe_numbers_not_positions() -> None:
    assert convert_value(Norm, scalar(1, "int"), "norm") is Norm.L1
    assert convert_value(Norm, scalar(2, "int"), "norm") is Norm.L2
    assert convert_value(Norm, scalar("l2", "word"), "norm") is Norm.L2  # names, any case
    assert convert_value(Norm, scalar("L1", "string"), "norm") is Norm.L1


@pytest.mark.parametrize("number", [0, 3, -1])
def test_a_number_caffe_does_not_have_is_an_error_with_the_numbers(number: int) -> None:
    with pytest.raises(SpecError) as info:
        convert_value(Norm, scalar(number, "int"), "norm")
    e = info.value
    assert e.message == f"'norm' has no value numbered {number}"
    assert e.span == SPAN
    assert e.hint == "Caffe numbers its values L1 = 1, L2 = 2; the names work too"


def test_a_plain_enum_takes_names_only() -> None:
    """FillerParameter.type is a string in Caffe's proto: it has no numbers."""
    with pytest.raises(SpecError) as info:
        convert_value(FillerType, scalar(0, "int"), "type")
    assert "must be one of constant, gaussian" in info.value.message
    assert info.value.hint == "write the name: Caffe's proto has no numbers for it"


def test_names_that_look_like_values_are_not_names() -> None:
    with pytest.raises(SpecError, match="must be one of L1, L2; got 1"):
        convert_value(Norm, scalar("1", "string"), "norm")


@dataclasses.dataclass(frozen=True)
class WithEngine:
    engine: str = dataclasses.field(default="DEFAULT", metadata={"numbers": Norm})


def test_a_word_field_with_numbers_reads_them_as_names() -> None:
    def read(v: s.Value) -> str:
        return convert(WithEngine, [s.Field("engine", v, SPAN, SPAN)], "x").engine

    assert read(scalar(2, "int")) == "L2"
    assert read(scalar("MKLDNN", "word")) == "MKLDNN"  # other words pass, as before
    with pytest.raises(SpecError, match="'engine' has no value numbered 7"):
        read(scalar(7, "int"))


# ------------------------------------------------------------------ every enum field


def _enum_fields() -> dict[type[enum.Enum], list[str]]:
    """Every enum type a registered layer's params hold (nested blocks included), with
    where: ``{PoolMethod: ["Pooling.pool", "SPP.pool"], ...}``."""
    out: dict[type[enum.Enum], list[str]] = {}
    seen: set[type] = set()

    def walk(cls: type, where: str) -> None:
        if cls in seen:
            return
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp: Any = hints[f.name]
            while typing.get_args(tp):  # Optional[...], tuple[..., ...]
                tp = next(a for a in typing.get_args(tp) if a is not type(None))
            if isinstance(tp, type) and issubclass(tp, enum.Enum):
                out.setdefault(tp, []).append(f"{where}.{f.name}")
            elif dataclasses.is_dataclass(tp):
                walk(tp, f"{where}.{f.name}")
            if f.metadata.get("numbers") is not None:
                out.setdefault(f.metadata["numbers"], []).append(f"{where}.{f.name}")

    for name, kind in sorted(TYPES.items()):
        walk(kind.Params, name)
    return out


ENUM_FIELDS = _enum_fields()
#: Enums that are no enum in Caffe's proto: FillerParameter.type is a string.
NOT_CAFFE_ENUMS = {FillerType}


def test_every_enum_field_of_every_layer_type_carries_caffe_numbers() -> None:
    plain = {tp for tp in ENUM_FIELDS if not issubclass(tp, CaffeEnum)}
    assert plain - NOT_CAFFE_ENUMS == set(), {
        tp.__name__: ENUM_FIELDS[tp] for tp in plain - NOT_CAFFE_ENUMS}


@pytest.mark.parametrize("tp", sorted((t for t in ENUM_FIELDS if issubclass(t, CaffeEnum)),
                                      key=lambda t: t.__name__), ids=lambda t: t.__name__)
def test_each_member_reads_by_name_and_by_number(tp: type[CaffeEnum]) -> None:
    assert len({m.value for m in tp}) == len(tp), "numbers must be unique"
    for m in tp:
        assert isinstance(m.value, int) and not isinstance(m.value, bool)
        assert convert_value(tp, scalar(m.value, "int"), "f") is m
        assert convert_value(tp, scalar(m.name, "word"), "f") is m


# ------------------------------------------------------------------ in Caffe's own text

#: (layer type, text, where the value lands, what it must be), numbers from the protos.
CASES = [
    ("HingeLoss", "hinge_loss_param { norm: 1 }", "norm", "L1"),
    ("HingeLoss", "hinge_loss_param { norm: 2 }", "norm", "L2"),
    ("Reduction", "reduction_param { operation: 1 }", "operation", "SUM"),
    ("Reduction", "reduction_param { operation: 2 }", "operation", "ASUM"),
    ("Reduction", "reduction_param { operation: 3 }", "operation", "SUMSQ"),
    ("Reduction", "reduction_param { operation: 4 }", "operation", "MEAN"),
    ("Pooling", "pooling_param { pool: 0 kernel_size: 2 }", "pool", "MAX"),
    ("Pooling", "pooling_param { pool: 1 kernel_size: 2 }", "pool", "AVE"),
    ("Pooling", "pooling_param { pool: 2 kernel_size: 2 }", "pool", "STOCHASTIC"),
    ("Pooling", "pooling_param { round_mode: 1 kernel_size: 2 }", "round_mode", "FLOOR"),
    ("Pooling", "pooling_param { engine: 2 kernel_size: 2 }", "engine", "CUDNN"),
    ("SPP", "spp_param { pyramid_height: 2 pool: 1 }", "pool", "AVE"),
    ("Eltwise", "eltwise_param { operation: 0 }", "operation", "PROD"),
    ("Eltwise", "eltwise_param { operation: 1 }", "operation", "SUM"),
    ("Eltwise", "eltwise_param { operation: 2 }", "operation", "MAX"),
    ("LRN", "lrn_param { norm_region: 1 }", "norm_region", "WITHIN_CHANNEL"),
    ("BN", "bn_param { bn_mode: 1 }", "bn_mode", "INFERENCE"),
    ("Convolution", "convolution_param { num_output: 2 kernel_size: 1 engine: 1 }",
     "engine", "CAFFE"),
    ("Convolution", "convolution_param { num_output: 2 kernel_size: 1 "
     "weight_filler { type: 'xavier' variance_norm: 2 } }",
     "weight_filler.variance_norm", "AVERAGE"),
    ("ReLU", "relu_param { engine: 2 }", "engine", "CUDNN"),
    ("Softmax", "softmax_param { engine: 0 }", "engine", "DEFAULT"),
    ("Data", "data_param { source: 'x' batch_size: 1 backend: 1 }", "backend", "LMDB"),
    ("DetectionOutput", "detection_output_param { num_classes: 2 code_type: 2 }",
     "code_type", "CENTER_SIZE"),
    ("MultiBoxLoss", "multibox_loss_param { num_classes: 2 code_type: 3 loc_loss_type: 0 "
     "conf_loss_type: 1 match_type: 0 mining_type: 2 }", "code_type", "CORNER_SIZE"),
    ("MultiBoxLoss", "multibox_loss_param { num_classes: 2 loc_loss_type: 0 }",
     "loc_loss_type", "L2"),
    ("MultiBoxLoss", "multibox_loss_param { num_classes: 2 conf_loss_type: 1 }",
     "conf_loss_type", "LOGISTIC"),
    ("MultiBoxLoss", "multibox_loss_param { num_classes: 2 match_type: 0 }",
     "match_type", "BIPARTITE"),
    ("MultiBoxLoss", "multibox_loss_param { num_classes: 2 mining_type: 2 }",
     "mining_type", "HARD_EXAMPLE"),
    ("AnnotatedData", "data_param { source: 'x' batch_size: 1 backend: 1 } "
     "annotated_data_param { anno_type: 0 }", "anno_type", "BBOX"),
    ("AnnotatedData", "transform_param { resize_param { resize_mode: 3 pad_mode: 2 "
     "interp_mode: 1 interp_mode: 3 height: 4 width: 4 } }",
     "transform.resize_param.resize_mode", "FIT_LARGE_SIZE_AND_PAD"),
    ("AnnotatedData", "transform_param { resize_param { pad_mode: 2 height: 4 width: 4 } }",
     "transform.resize_param.pad_mode", "MIRRORED"),
    ("AnnotatedData", "transform_param { resize_param { interp_mode: [1, 3, 5] height: 4 "
     "width: 4 } }", "transform.resize_param.interp_mode", ("LINEAR", "NEAREST", "LANCZOS4")),
    ("AnnotatedData", "transform_param { emit_constraint { emit_type: 1 emit_overlap: 0.5 } }",
     "transform.emit_constraint.emit_type", "MIN_OVERLAP"),
]


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _names(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_names(x) for x in v)
    return v.name if isinstance(v, enum.Enum) else v


@pytest.mark.parametrize("type_name, body, where, want", CASES)
def test_caffe_numbers_in_caffe_text(type_name: str, body: str, where: str, want: Any) -> None:
    assert _names(_at(params_from_text(type_name, body), where)) == want


def test_an_unknown_number_in_caffe_text_points_at_the_value() -> None:
    body = "hinge_loss_param { norm: 3 }"
    with pytest.raises(SpecError) as info:
        params_from_text("HingeLoss", body)
    e = info.value
    assert e.message == "'norm' has no value numbered 3"
    text = f'layer {{ name: "l" type: "HingeLoss" bottom: "x" top: "y" {body} }}'
    assert (e.span.line, e.span.col) == (1, text.index("3 }") + 1)  # at the number
    assert e.hint == "Caffe numbers its values L1 = 1, L2 = 2; the names work too"


def test_numbers_convert_to_names_both_ways(tmp_path: Path) -> None:
    """``netdsl convert`` reads Caffe's numbers and writes the names, which read back
    the same (shapes and typed layers checked by the round trip)."""
    net, back = convert_both_ways(tmp_path, inputs(x=(2, 3, 8, 8), y=(2,)) + (
        'layer { name: "p" type: "Pooling" bottom: "x" top: "p" '
        "pooling_param { pool: 1 kernel_size: 2 stride: 2 engine: 2 } }\n"
        'layer { name: "e" type: "Eltwise" bottom: "p" bottom: "p" top: "e" '
        "eltwise_param { operation: 0 } }\n"
        'layer { name: "r" type: "Reduction" bottom: "e" top: "r" '
        "reduction_param { operation: 4 axis: 1 } }\n"
        'layer { name: "h" type: "HingeLoss" bottom: "r" bottom: "y" top: "h" '
        "hinge_loss_param { norm: 2 } }\n"))
    for text in (net, back):
        assert "AVE" in text and "CUDNN" in text and "PROD" in text and "MEAN" in text
        assert "L2" in text
