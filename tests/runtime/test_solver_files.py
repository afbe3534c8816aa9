"""Caffe's own solver.prototxt files read into the solver section and SolverConfig."""

from __future__ import annotations

from pathlib import Path

import pytest

import netdsl
from tests.shared import caffe_params


@pytest.mark.parametrize("path", caffe_params("solvers"))
def test_caffe_solver_files(path: Path) -> None:
    net = netdsl.load(path)  # the solver section is typed and checked at the build stage
    assert net.layers == ()
    block = next(f.value for f in netdsl.load_spec(path).items if f.key == "solver")
    cfg = net.solver
    assert cfg.base_lr == block.scalar("base_lr")
    assert cfg.lr_policy == block.scalar("lr_policy")
    assert cfg.max_iter == block.scalar("max_iter")
    assert cfg.net == block.scalar("net")


def test_alexnet_solver_values(shared_caffe: Path) -> None:
    cfg = netdsl.load(shared_caffe / "prototxt" / "bvlc_alexnet__solver.prototxt").solver
    assert (cfg.base_lr, cfg.gamma, cfg.stepsize, cfg.momentum, cfg.weight_decay) == (
        0.01, 0.1, 100000, 0.9, 0.0005)
