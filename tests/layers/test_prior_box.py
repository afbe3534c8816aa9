"""PriorBox (SSD's Caffe, weiliu89/caffe, prior_box_layer.cpp): shapes, every CHECK of
LayerSetUp, and the priors against a numpy transcription of Forward_cpu."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from netdsl.layers.prior_box import aspect_ratios, num_priors

from .helpers import kind, lower, params, params_from_text, shape_error, shapes
from .roundtrip import round_trip

F = np.float32


def _reference(layer_hw: tuple[int, int], img_hw: tuple[int, int], min_size: list[float],
               max_size: list[float] = (), aspect_ratio: list[float] = (), flip: bool = True,
               clip: bool = False, variance: list[float] = (), step: float | None = None,
               offset: float = 0.5) -> np.ndarray:
    """Forward_cpu in numpy: C floats (np.float32) where Caffe has floats, doubles where
    it computes in double; returns the doubles Caffe stores into the blob."""
    ars = [F(1.0)]
    for a in map(F, aspect_ratio):
        if any(abs(F(a - x)) < 1e-6 for x in ars):
            continue
        ars.append(a)
        if flip:
            ars.append(F(1.0 / float(a)))
    lh, lw = layer_hw
    ih, iw = img_hw
    step_h = F(step) if step else F(F(ih) / F(lh))
    step_w = F(step) if step else F(F(iw) / F(lw))
    off = F(offset)
    out: list[float] = []
    for h in range(lh):
        for w in range(lw):
            cx = float(F(F(F(w) + off) * step_w))
            cy = float(F(F(F(h) + off) * step_h))
            for s, mn in enumerate(min_size):
                m = int(F(mn))
                boxes = [(float(F(m)), float(F(m)))]
                if max_size:
                    side = float(F(math.sqrt(m * int(F(max_size[s])))))
                    boxes.append((side, side))
                for ar in ars:
                    if abs(float(ar) - 1.0) < 1e-6:
                        continue
                    boxes.append((float(F(m * math.sqrt(float(ar)))),
                                  float(F(m / math.sqrt(float(ar))))))
                for bw, bh in boxes:
                    out += [(cx - bw / 2.0) / iw, (cy - bh / 2.0) / ih,
                            (cx + bw / 2.0) / iw, (cy + bh / 2.0) / ih]
    top = np.array(out)
    if clip:
        top = np.minimum(np.maximum(top, 0.0), 1.0)
    var = [float(F(v)) for v in variance] or [float(F(0.1))]
    variances = np.tile(var, top.size // 4) if len(var) == 4 else np.full(top.size, var[0])
    return np.stack([top, variances])[None]


def test_shapes() -> None:
    # conv4_3 of SSD300: 38 x 38, 4 priors (1, sqrt(30*60), 2, 1/2)
    assert shapes("PriorBox", ((1, 512, 38, 38), (1, 3, 300, 300)), min_size=(30.0,),
                  max_size=(60.0,), aspect_ratio=(2.0,)) == ((1, 2, 38 * 38 * 4 * 4),)
    # the batch does not matter: one set of priors for all images
    assert shapes("PriorBox", ((8, 16, 3, 5), (8, 3, 30, 50)), min_size=(4.0,)) == (
        (1, 2, 3 * 5 * 4),)


def test_prior_counts() -> None:
    def n(**kw: object) -> int:
        return num_priors(params("PriorBox", **kw))

    assert n(min_size=(30.0,)) == 1
    assert n(min_size=(30.0,), max_size=(60.0,), aspect_ratio=(2.0, 3.0)) == 6
    assert n(min_size=(30.0,), aspect_ratio=(2.0, 3.0), flip=False) == 3
    assert n(min_size=(30.0,), aspect_ratio=(2.0, 2.0, 1.0, 0.5)) == 3  # duplicates dropped
    assert n(min_size=(30.0, 60.0), max_size=(60.0, 90.0), aspect_ratio=(2.0,)) == 8
    assert aspect_ratios(params("PriorBox", min_size=(1.0,), aspect_ratio=(3.0,))) == [
        1.0, 3.0, float(F(1 / F(3.0)))]


def test_checks() -> None:
    b = ((1, 8, 4, 4), (1, 3, 32, 32))
    shape_error("PriorBox", b, match="needs min_size")
    shape_error("PriorBox", b, match="positive", field="min_size", min_size=(0.0,))
    shape_error("PriorBox", b, match="one each", field="max_size", min_size=(4.0,),
                max_size=(8.0, 9.0))
    shape_error("PriorBox", b, match="greater than min_size", field="max_size",
                min_size=(4.0,), max_size=(4.0,))
    shape_error("PriorBox", b, match="1 or 4 variances", field="variance", min_size=(4.0,),
                variance=(0.1, 0.2))
    shape_error("PriorBox", b, match="positive", field="variance", min_size=(4.0,),
                variance=(0.0,))
    shape_error("PriorBox", b, match="not both", field="img_size", min_size=(4.0,), img_size=32,
                img_h=32)
    shape_error("PriorBox", b, match="img_h needs img_w", field="img_h", min_size=(4.0,),
                img_h=32)
    shape_error("PriorBox", b, match="img_w must be larger", field="img_w", min_size=(4.0,),
                img_h=32, img_w=0)
    shape_error("PriorBox", b, match="img_size must be larger", field="img_size", min_size=(4.0,),
                img_size=0)
    shape_error("PriorBox", b, match="not both", field="step", min_size=(4.0,), step=8.0,
                step_w=8.0)
    shape_error("PriorBox", b, match="step_w needs step_h", field="step_w",
                min_size=(4.0,), step_w=8.0)
    shape_error("PriorBox", b, match="step_h must be larger", field="step_h",
                min_size=(4.0,), step_h=-1.0, step_w=8.0)
    shape_error("PriorBox", ((1, 8, 0, 4), (1, 3, 32, 32)), match="no priors",
                min_size=(4.0,))
    shape_error("PriorBox", ((1, 8, 4, 4, 1), (1, 3, 32, 32)), match="at most 4 axes",
                min_size=(4.0,))


def test_params_from_caffe_text() -> None:
    p = params_from_text("PriorBox", """prior_box_param {
        min_size: 30.0 max_size: 60.0 aspect_ratio: 2 aspect_ratio: 3 flip: true clip: false
        variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 8 offset: 0.5 }""")
    assert p.min_size == (30.0,) and p.aspect_ratio == (2.0, 3.0) and p.step == 8.0
    assert p.variance == (0.1, 0.1, 0.2, 0.2)
    assert kind("PriorBox").doc.endswith("(fork: SSD's Caffe, weiliu89/caffe).")


CASES = [
    # SSD300's conv4_3 and conv9_2 heads
    dict(layer_hw=(38, 38), img_hw=(300, 300), min_size=[30.0], max_size=[60.0],
         aspect_ratio=[2.0], variance=[0.1, 0.1, 0.2, 0.2], step=8.0),
    dict(layer_hw=(1, 1), img_hw=(300, 300), min_size=[264.0], max_size=[315.0],
         aspect_ratio=[2.0], variance=[0.1, 0.1, 0.2, 0.2], step=300.0),
    # steps from the sizes (300 / 19 is not exact), clipped, several sizes, odd ratios
    dict(layer_hw=(19, 19), img_hw=(300, 300), min_size=[60.0, 70.5], max_size=[111.0, 120.0],
         aspect_ratio=[2.0, 3.0, 0.7], clip=True),
    dict(layer_hw=(3, 5), img_hw=(37, 61), min_size=[7.0], aspect_ratio=[1.5, 1.0],
         flip=False, variance=[0.2], offset=0.25),
]


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_priors_against_reference(case: dict) -> None:
    import torch

    lh, lw = case["layer_hw"]
    ih, iw = case["img_hw"]
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in case.items()
          if k not in ("layer_hw", "img_hw")}
    m, tops = lower("PriorBox", ((2, 4, lh, lw), (2, 3, ih, iw)), **kw)
    feat, img = torch.zeros(2, 4, lh, lw, dtype=torch.float64), torch.zeros(2, 3, ih, iw)
    (y,) = m(feat, img)
    want = _reference(**case)
    assert tuple(y.shape) == tops[0] == want.shape
    np.testing.assert_array_equal(y.numpy(), want)  # the doubles Caffe computes
    (y32,) = m(feat.float(), img)
    np.testing.assert_array_equal(y32.numpy(), want.astype(np.float32))  # Caffe's blob


def test_known_values() -> None:
    """SSD300's conv9_2 prior: a 264-pixel square centred in the 300 x 300 image, then
    sqrt(264 * 315), then aspect ratios 2 and 1/2."""
    import torch

    m, _ = lower("PriorBox", ((1, 4, 1, 1), (1, 3, 300, 300)), min_size=(264.0,),
                 max_size=(315.0,), aspect_ratio=(2.0,), variance=(0.1, 0.1, 0.2, 0.2),
                 step=300.0)
    (y,) = m(torch.zeros(1, 4, 1, 1, dtype=torch.float64), None)
    boxes = y[0, 0].reshape(-1, 4).numpy()
    side = float(F(math.sqrt(264 * 315)))
    np.testing.assert_allclose(boxes[0], [0.06, 0.06, 0.94, 0.94], atol=1e-12)
    np.testing.assert_allclose(boxes[1], [0.5 - side / 600, 0.5 - side / 600,
                                          0.5 + side / 600, 0.5 + side / 600], atol=1e-12)
    w, h = 264 * math.sqrt(2), 264 / math.sqrt(2)
    np.testing.assert_allclose(boxes[2], [0.5 - w / 600, 0.5 - h / 600, 0.5 + w / 600,
                                          0.5 + h / 600], atol=1e-6)
    np.testing.assert_allclose(y[0, 1].numpy(), [0.1, 0.1, 0.2, 0.2] * 4, atol=1e-8)


def test_image_size_from_params_ignores_the_second_bottom() -> None:
    import torch

    m, _ = lower("PriorBox", ((1, 4, 2, 2), (1, 3, 999, 7)), min_size=(8.0,), img_size=32)
    (y,) = m(torch.zeros(1, 4, 2, 2, dtype=torch.float64), None)
    np.testing.assert_array_equal(y.numpy(), _reference((2, 2), (32, 32), [8.0]))


def test_convert_both_ways(tmp_path: Path) -> None:
    text = round_trip(tmp_path, """input: "data" input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }
        input: "fc7" input_shape { dim: 1 dim: 8 dim: 19 dim: 19 }
        layer { name: "fc7_mbox_priorbox" type: "PriorBox" bottom: "fc7" bottom: "data"
                top: "fc7_mbox_priorbox"
                prior_box_param { min_size: 60.0 max_size: 111.0 aspect_ratio: 2.0
                  aspect_ratio: 3.0 flip: true clip: false variance: 0.1 variance: 0.1
                  variance: 0.2 variance: 0.2 step: 16.0 offset: 0.5 } }""")
    assert "aspect_ratio: [2, 3]" in text
