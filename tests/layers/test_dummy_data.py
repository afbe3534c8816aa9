from __future__ import annotations

import numpy as np

from netdsl.layers import REGISTRY
from netdsl.layers.base import Filler, FillerType

from .helpers import close, lower, np_, params_from_text, shape_error, shapes


def test_names_and_flags() -> None:
    k = REGISTRY["DUMMY_DATA"]
    assert k is REGISTRY["DummyData"] and k.is_data and k.bottoms.max == 0


def test_shapes_as_written_batch_included() -> None:
    assert shapes("DummyData", (), shape=((5, 3, 8, 8),)) == ((5, 3, 8, 8),)
    assert shapes("DummyData", (), tops=2, shape=((5, 3, 8, 8),)) == ((5, 3, 8, 8),) * 2
    assert shapes("DummyData", (), tops=2, shape=((5, 3), (5,))) == ((5, 3), (5,))
    assert shapes("DummyData", (), tops=2, num=(5,), channels=(3, 1), height=(8, 1),
                  width=(8, 1)) == ((5, 3, 8, 8), (5, 1, 1, 1))


def test_caffe_text_shape_blocks() -> None:
    p = params_from_text(
        "DummyData",
        'dummy_data_param { shape { dim: 10 dim: 3 dim: 2 } shape { dim: 10 } '
        'data_filler { type: "gaussian" std: 0.5 } }',
    )
    assert p.shape == ((10, 3, 2), (10,))
    assert [(f.type, f.std) for f in p.data_filler] == [(FillerType.gaussian, 0.5)]


def test_checks() -> None:
    shape_error("DummyData", (), tops=3, match="2 data fillers", field="data_filler",
                shape=((2,),), data_filler=(Filler(), Filler()))
    shape_error("DummyData", (), tops=3, match="once per top", field="shape",
                shape=((2,), (3,)))
    shape_error("DummyData", (), match="not both", field="shape", shape=((2,),), num=(1,),
                channels=(1,), height=(1,), width=(1,))
    shape_error("DummyData", (), match="'width' once", num=(1,),
                channels=(1,), height=(1,))
    shape_error("DummyData", (), match="below 1", field="shape", shape=((2, 0),))


def test_lowering_fills_every_call() -> None:
    fillers = (Filler(FillerType.constant, value=2.0),
               Filler(FillerType.uniform, min=-1.0, max=3.0))
    m, tops = lower("DummyData", (), tops=2, shape=((4, 3), (1000,)), data_filler=fillers)
    a, b = m()
    assert (tuple(a.shape), tuple(b.shape)) == tops
    close(a, np.full((4, 3), 2.0))
    bn = np_(b)
    assert bn.min() >= -1 and bn.max() <= 3 and bn.std() > 0.5
    assert not np.array_equal(bn, np_(m()[1]))
    m, _ = lower("DummyData", (), shape=((2, 2),))
    close(m()[0], np.zeros((2, 2)))  # no filler: Caffe's constant 0
