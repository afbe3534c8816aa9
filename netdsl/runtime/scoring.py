"""The TEST pass of training (Caffe's ``Solver::Test``), and NaN scores in a test.

A test pass on NaN scores reports NaN metrics: an Accuracy layer counts the classes whose
score beats the label's, none beats a NaN, and NaN scores would read as accuracy 1.0. The
check is device ops only (``torch.where``), no host sync per batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from netdsl import Role, ir
from netdsl.diagnostics import DataError, Span

if TYPE_CHECKING:
    from netdsl.runtime.progress import Reporter
    from netdsl.runtime.train import Trainer

__all__ = ["metric_blobs", "poison_metrics", "prediction_blob", "scores_blob", "solver_test"]


def solver_test(trainer: Trainer, batches: int,
                reporter: Reporter | None = None) -> dict[str, float]:
    """Run ``batches`` test batches of ``trainer``'s TEST net; each scalar output blob
    averaged over them, and ``loss``: the loss-weighted sum of the loss blobs
    (``Solver::Test``). A batch whose class scores are not all finite counts as NaN for
    every metric."""
    if trainer.test_net is None or trainer.test_loader is None:
        raise DataError(f"'{trainer.spec_path}' has no TEST phase to test: no test data or "
                        "no TEST net", None,
                        "give the spec a data { test { ... } } section, or test with a "
                        "Caffe solver whose test_net is set")
    if trainer._copied:
        src = trainer.net.state_dict()
        trainer.test_net.load_state_dict({k: src[k] for k in trainer._copied}, strict=False)
    sums: dict[str, torch.Tensor] = {}
    if reporter is not None:
        reporter.test_begin(trainer.iteration, batches)
    wanted = list(trainer.test_net.outputs)
    if trainer.test_scores is not None and trainer.test_scores not in wanted:
        wanted.append(trainer.test_scores)
    with torch.no_grad():
        for _ in range(batches):
            x, y = trainer.test_loader.next_batch()
            out = trainer.test_net(outputs=wanted, **trainer.test_feeds.inputs(x, y))
            scores = out.get(trainer.test_scores) if trainer.test_scores is not None else None
            if trainer.test_scores not in trainer.test_net.outputs:
                out.pop(trainer.test_scores, None)
            poison_metrics(out, trainer.test_metrics, scores)
            for k, v in out.items():
                if v.numel() == 1:
                    v = v.detach().reshape(()).double()
                    sums[k] = v if k not in sums else sums[k] + v.to(sums[k].device)
            if reporter is not None:
                reporter.test_advance()
    keys = sorted(sums)
    totals = [float(sums[k].item()) for k in keys]
    if trainer.world is not None:  # each process tested its share of every batch
        totals = [t / trainer.world.size for t in trainer.world.all_sum(totals).tolist()]
    means = {k: t / batches for k, t in zip(keys, totals, strict=True)}
    means = {k: means[k] for k in sums}  # the net's order
    weights = trainer.test_net.loss_weights
    if any(k in means for k in weights):
        means["loss"] = sum(w * means[k] for k, w in weights.items() if k in means)
    return means


def poison_metrics(values: dict[str, torch.Tensor], metrics: Iterable[str],
                   scores: torch.Tensor | None) -> None:
    """Set the metric outputs of one test batch to NaN where its class scores are not all
    finite (in place, device ops only)."""
    if scores is None:
        return
    bad = ~torch.isfinite(scores.detach()).all()
    for k in metrics:
        v = values.get(k)
        if v is not None and v.is_floating_point():
            values[k] = torch.where(bad.to(v.device), torch.full_like(v, math.nan), v)


def prediction_blob(net: ir.Net) -> tuple[str, bool]:
    """The blob holding the class scores, and whether it is already probabilities.

    The first bottom of the first metric (Accuracy) that reads class scores, else of the
    first loss that does (SoftmaxWithLoss); else the top of the last layer that makes
    probabilities (a deploy net's Softmax ``prob``).
    """
    for role in (Role.METRIC, Role.LOSS):
        for lay in net.layers:
            if lay.kind.role is role and lay.kind.reads_class_scores:
                return lay.bottoms[0], False
    for lay in reversed(net.layers):
        if lay.kind.role is Role.PROBABILITIES:
            return lay.tops[0], True
    raise DataError(
        f"cannot tell which blob of net '{net.name}' holds the class scores",
        Span(net.path),
        hint="netdsl test reads the first bottom of an Accuracy or SoftmaxWithLoss layer, "
        "or the top of a Softmax layer; add one",
    )


def metric_blobs(net: ir.Net) -> frozenset[str]:
    """The tops of the net's metric layers (Accuracy...)."""
    return frozenset(t for lay in net.layers if lay.kind.role is Role.METRIC for t in lay.tops)


def scores_blob(net: ir.Net) -> str | None:
    """The blob of the class scores (:func:`prediction_blob`), or None."""
    try:
        return prediction_blob(net)[0]
    except DataError:
        return None
