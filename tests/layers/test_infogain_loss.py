"""InfogainLoss against a numpy transcription of Caffe's infogain_loss_layer.cpp, with H
as a third bottom and read from a BlobProto file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netdsl.caffe_pb import BlobProto
from netdsl.layers import REGISTRY
from netdsl.layers.softmax_with_loss import Normalization

from .helpers import close, lower, params_from_text, shape_error, shapes
from .roundtrip import inputs, round_trip

K_LOG_THRESHOLD = 1e-20


def write_h(path: Path, h: np.ndarray, legacy: bool = False) -> str:
    c = h.shape[0]
    if legacy:
        blob = BlobProto(num=1, channels=1, height=c, width=c, data=h.ravel().tolist())
    else:
        blob = BlobProto(data=h.ravel().tolist())
        blob.shape.dim.extend([1, 1, c, c])
    path.write_bytes(blob.SerializeToString())
    return str(path)


def _softmax(x: np.ndarray, outer: int, c: int, inner: int) -> np.ndarray:
    """Caffe's SoftmaxLayer along the axis: subtract the max, exp, divide by the sum."""
    xs = x.reshape(outer, c, inner)
    z = np.exp(xs - xs.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).ravel()


def _reference(x: np.ndarray, label: np.ndarray, h: np.ndarray, axis: int,
               ignore: int | None, mode: str, top_diff: float) -> tuple[float, np.ndarray]:
    """Forward_cpu and Backward_cpu, loop for loop."""
    outer = int(np.prod(x.shape[:axis]))
    c = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:]))
    prob = _softmax(x, outer, c, inner)
    lab = label.ravel()
    hm = h.ravel()

    def normalizer(valid: int) -> float:
        n = {"FULL": outer * inner, "VALID": valid, "BATCH_SIZE": outer, "NONE": 1}[mode]
        return max(1.0, n)

    loss, count = 0.0, 0
    for i in range(outer):
        for j in range(inner):
            v = int(lab[i * inner + j])
            if ignore is not None and v == ignore:
                continue
            for m in range(c):
                loss -= hm[v * c + m] * np.log(max(prob[i * inner * c + m * inner + j],
                                                   K_LOG_THRESHOLD))
            count += 1
    loss /= normalizer(count)
    sum_rows = [sum(hm[r * c + k] for k in range(c)) for r in range(c)]
    dim = x.size // outer
    diff = np.zeros(x.size)
    count = 0
    for i in range(outer):
        for j in range(inner):
            v = int(lab[i * inner + j])
            if ignore is not None and v == ignore:
                continue  # diff stays 0
            for m in range(c):
                k = i * dim + m * inner + j
                diff[k] = prob[k] * sum_rows[v] - hm[v * c + m]
            count += 1
    return loss, (diff * top_diff / normalizer(count)).reshape(x.shape)


def _problem(seed: int = 4) -> tuple:
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 3, 2, generator=gen, dtype=torch.float64) * 2
    x[0, :, 0, 0] = torch.tensor([60.0, -60.0, 0.0, 0.0], dtype=torch.float64)  # p < 1e-20
    label = torch.randint(0, 4, (2, 1, 3, 2), generator=gen).double()
    label[0, 0, 0, 0] = 1  # the clamped probability is the label's
    label[1, 0, 2, :] = 255
    h = torch.rand(4, 4, generator=gen, dtype=torch.float64) + torch.eye(4, dtype=torch.float64)
    return x, label, h


def test_names_arity_and_role() -> None:
    k = REGISTRY["INFOGAIN_LOSS"]
    assert k is REGISTRY["InfogainLoss"] and k.is_loss and k.reads_class_scores
    assert (k.bottoms.min, k.bottoms.max, k.tops.min, k.tops.max) == (2, 3, 1, 2)


def test_shapes_with_a_third_bottom() -> None:
    assert shapes("InfogainLoss", ((8, 5), (8,), (5, 5))) == ((),)
    assert shapes("InfogainLoss", ((8, 5), (8,), (1, 1, 5, 5)), tops=2) == ((), (8, 5))
    assert shapes("InfogainLoss", ((2, 3, 5), (2, 3), (25,)), axis=-1) == ((),)


def test_checks() -> None:
    shape_error("InfogainLoss", ((8, 5), (8,)), match="source.*or a third bottom",
                field="bottom")
    shape_error("InfogainLoss", ((8, 5), (8,), (5, 5)), match="deprecated", field="normalize",
                normalize=True)
    shape_error("InfogainLoss", ((8, 5), (4,), (5, 5)), match="same first dimension")
    shape_error("InfogainLoss", ((8, 5, 3), (8, 5), (5, 5)), match="one per position",
                field="axis", axis=1)
    shape_error("InfogainLoss", ((8, 5), (8,), (5, 4)), match="5 x 5 values", field="bottom")
    shape_error("InfogainLoss", ((8, 5), (8,), (5, 5)), match="out of range", field="axis",
                axis=2)


def test_checks_on_the_source_file(tmp_path: Path) -> None:
    good = write_h(tmp_path / "h.binaryproto", np.eye(5))
    assert shapes("InfogainLoss", ((8, 5), (8,)), source=good) == ((),)
    legacy = write_h(tmp_path / "l.binaryproto", np.eye(5), legacy=True)
    assert shapes("InfogainLoss", ((8, 5), (8,)), source=legacy) == ((),)
    shape_error("InfogainLoss", ((8, 6), (8,)), match="6 x 6 values.*holds 25",
                field="source", source=good)
    err = shape_error("InfogainLoss", ((8, 5), (8,)), match="cannot read",
                      field="source", source="no/such/H.binaryproto")
    assert "working directory" in (err.hint or "")
    bad = tmp_path / "bad.binaryproto"
    bad.write_bytes(b"\xff\xff\xff")
    shape_error("InfogainLoss", ((8, 5), (8,)), match="not a Caffe BlobProto",
                source=str(bad))
    short = BlobProto(data=[1.0, 2.0])
    short.shape.dim.extend([5, 5])
    (tmp_path / "short.binaryproto").write_bytes(short.SerializeToString())
    shape_error("InfogainLoss", ((8, 5), (8,)), match="needs 25 values",
                source=str(tmp_path / "short.binaryproto"))


def test_params_from_caffe_text() -> None:
    p = params_from_text("InfogainLoss", "")
    assert (p.source, p.axis, p.normalization, p.ignore_label) == ("", 1, Normalization.VALID,
                                                                  None)
    p = params_from_text("InfogainLoss", 'infogain_loss_param { source: "H.binaryproto" '
                         "axis: 2 } loss_param { ignore_label: 255 normalization: FULL }")
    assert (p.source, p.axis, p.ignore_label, p.normalization) == (
        "H.binaryproto", 2, 255, Normalization.FULL)


@pytest.mark.parametrize("mode", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
@pytest.mark.parametrize("ignore", [None, 255])
def test_forward_and_backward_against_caffe(mode: str, ignore: int | None) -> None:
    x, label, h = _problem()
    if ignore is None:
        label[1, 0, 2, :] = 3
    x.requires_grad_(True)
    m, _ = lower("InfogainLoss", (tuple(x.shape), tuple(label.shape), (4, 4)),
                 ignore_label=ignore, normalization=Normalization[mode])
    (loss,) = m(x, label, h)
    (loss * 1.5).backward()
    want, grad = _reference(x.detach().numpy(), label.numpy(), h.numpy(), 1, ignore, mode,
                            1.5)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(x.grad, grad, 1e-12)


def test_last_axis_and_the_probability_top() -> None:
    import torch

    x, _, h = _problem(9)
    x = x.permute(0, 2, 3, 1).contiguous().requires_grad_(True)  # classes last
    label = torch.randint(0, 4, (2, 3, 2), generator=torch.Generator().manual_seed(1)).double()
    m, tops = lower("InfogainLoss", ((2, 3, 2, 4), (2, 3, 2), (4, 4)), tops=2, axis=-1)
    loss, prob = m(x, label, h)
    loss.backward()
    want, grad = _reference(x.detach().numpy(), label.numpy(), h.numpy(), 3, None, "VALID",
                            1.0)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(x.grad, grad, 1e-12)
    close(prob, torch.softmax(x, -1), 1e-12)
    assert tuple(prob.shape) == tops[1]


def test_h_from_the_source_file(tmp_path: Path) -> None:
    x, label, h = _problem()
    source = write_h(tmp_path / "H.binaryproto", h.numpy())
    x.requires_grad_(True)
    m, _ = lower("InfogainLoss", (tuple(x.shape), tuple(label.shape)), tops=2,
                 source=source, ignore_label=255)
    m.kernel.double()
    loss, _ = m(x, label)
    loss.backward()
    # the file holds float32 values, as Caffe's BlobProto data
    h32 = h.numpy().astype(np.float32).astype(np.float64)
    want, grad = _reference(x.detach().numpy(), label.numpy(), h32, 1, 255, "VALID", 1.0)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-12)
    close(x.grad, grad, 1e-12)
    assert dict(m.kernel.state_dict()) == {}  # H is not a weight of the net


def test_identity_h_is_softmax_with_loss() -> None:
    import torch

    x = torch.randn(6, 5, dtype=torch.float64)
    label = torch.arange(6) % 5
    m, _ = lower("InfogainLoss", ((6, 5), (6,), (5, 5)))
    s, _ = lower("SoftmaxWithLoss", ((6, 5), (6,)))
    close(m(x, label, torch.eye(5, dtype=torch.float64))[0], s(x, label)[0], 1e-12)


def test_convert_round_trip(tmp_path: Path) -> None:
    source = write_h(tmp_path / "H.binaryproto", np.eye(4))
    # netdsl gives every Input the net's one batch, so H is 4 x 4 here
    round_trip(tmp_path, inputs(s=(4, 4, 2, 2), y=(4, 1, 2, 2), H=(4, 4)) + (
        'layer { name: "a" type: "InfogainLoss" bottom: "s" bottom: "y" bottom: "H" '
        'top: "a" loss_param { ignore_label: 2 normalization: BATCH_SIZE } }\n'
        'layer { name: "b" type: "InfogainLoss" bottom: "s" bottom: "y" top: "b" top: "p" '
        f'infogain_loss_param {{ source: "{source}" axis: 1 }} }}\n'))
