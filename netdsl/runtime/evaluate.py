"""``netdsl test`` and ``netdsl time``: Caffe's ``caffe test`` and ``caffe time``.

:func:`test` scores trained weights on the test set, once per image: top-1, top-5 and the
cross-entropy from the class scores (with 10-crop testing, the softmax averaged over the 4
corner and centre crops and their mirrors, as the AlexNet paper tests; the mirrors only
where the net was trained on mirrored images), plus the TEST net's own scalar outputs
(loss, accuracy...) averaged over the images.

:func:`time` measures each layer's forward and backward time on synthetic input of the net's
input shapes, as ``caffe time`` prints it: module hooks around every layer's module, the
device synchronised at each hook on GPUs so that the time lands on the right layer.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any

import torch
from torch.autograd.graph import Node

from netdsl import ir
from netdsl.diagnostics import DataError, UsageError
from netdsl.runtime.data import average_crops, build_loader
from netdsl.runtime.loading import data_config, feeds_of, layer_input_shapes
from netdsl.runtime.precision import DTYPES, effective_runtime
from netdsl.runtime.progress import FORMATS, Bar, json_line
from netdsl.runtime.scoring import metric_blobs, poison_metrics, prediction_blob
from netdsl.sections import phase_data
from netdsl.weights import load_net_weights

log = logging.getLogger("netdsl")

__all__ = ["prediction_blob", "test", "time"]


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format '{fmt}'", None, f"one of {', '.join(FORMATS)}")


def test(
    spec_path: str | os.PathLike[str],
    *,
    weights: str | None = None,
    crops: int | None = None,
    overrides: Mapping[str, str] | None = None,
    devices: Mapping[str, str] | str | None = None,
    data_path: str | None = None,
    fmt: str = "rich",
    out: IO[str] | None = None,
    workers: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool | None = None,
    cuda_graphs: bool | None = None,
    allow_nonfinite: bool = False,
    iterations: int | None = None,
    mirror: bool | None = None,
    inputs: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """Score ``weights`` on the spec's test data, each image of a pass once.

    Args:
      weights: a ``.safetensors`` (a snapshot's weights file too) or ``.caffemodel``; every
        blob of the TEST net must be in it. ``None`` tests the fillers' initial weights
        (seeded by ``solver { random_seed }`` where it is set, as ``train`` starts).
      crops: 1 (centre crop) or 10 (4 corners and centre, and their mirrors; the softmax
        averaged over them); default the data's ``test_crops``.
      iterations: batches to run (Caffe's ``-iterations``); default one pass over the test
        set. Past the end the data starts again, each pass counting each image once.
      mirror: with 10 crops, whether the mirrored views are in (10 views) or not (5);
        default: whether the TRAIN data is mirrored (a net never trained on mirrored images
        is not tested on them).
      inputs: ``--input``: the ``(C, H, W)`` of a data layer's top the spec cannot know.
      overrides, devices, data_path, workers: as for :func:`netdsl.runtime.train.train`.
      precision, channels_last, compile, cuda_graphs: over the spec's ``runtime {}``.
      allow_nonfinite: load NaN or infinite weights (refused by default, by name).
      fmt: ``"rich"`` (progress bar and table), ``"json"`` (one JSON line) or ``"none"``.

    Returns:
      The same keys for 1 and 10 crops, every number a fraction or a plain value:
      ``top1``, ``top5`` and ``loss`` (the cross-entropy of the scored prediction: the
      softmax, averaged over the views with 10 crops), ``images``, ``batches``, ``crops``,
      ``mirror`` (mirrored views in), ``seconds``, and ``outputs``: the TEST net's scalar
      outputs (``accuracy``, its own ``loss``...) averaged over the images (with 10 crops
      over every view, each with its image's label; ``{}`` for a net without a label
      input). Scores that are not finite make every metric NaN.
    """
    import netdsl

    _check_fmt(fmt)
    if iterations is not None and iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {iterations}")
    stream = out if out is not None else sys.stdout
    setup = netdsl.load_training(spec_path, overrides)
    ir = setup.test_net
    cfg, data_span = data_config(ir, "test", data_path)
    n_crops = cfg.test_crops if crops is None else crops
    if n_crops not in (1, 10):
        raise UsageError(f"--crops must be 1 or 10, got {n_crops}")
    if n_crops == 10 and not cfg.crop:
        raise DataError(
            "10-crop testing needs the data to be cropped (the crops are taken at that size)",
            data_span,
            hint="set crop in the data's test { } block (and resize larger than the crop)",
        )
    if mirror is None:
        mirror = _trained_mirrored(setup.train_net, cfg.mirror)
    mirror = bool(mirror) and n_crops == 10
    cfg = replace(cfg, test_crops=n_crops)
    seed = max(0, int(setup.solver.random_seed))
    rt = effective_runtime(ir.runtime, precision=precision, channels_last=channels_last,
                           compile=compile, cuda_graphs=cuda_graphs)
    net = netdsl.compile(ir, "test", devices, batch=cfg.batch_size,
                         inputs=layer_input_shapes(ir, cfg, inputs), seed=seed,
                         dtype=DTYPES[rt.precision], channels_last=rt.channels_last,
                         torch_compile=rt.compile, cuda_graphs=rt.cuda_graphs)
    if weights is not None:
        load_net_weights(net, weights, strict=True, allow_nonfinite=allow_nonfinite)
    else:
        log.warning("netdsl: no --weights: testing the fillers' initial weights")
    feeds = feeds_of(net)
    loader = build_loader(cfg, "test", feeds.shape, seed, span=data_span, workers=workers,
                          device=net.input_device(feeds.data), ten_crop_mirror=mirror)
    pred, is_prob = prediction_blob(ir)
    metrics = metric_blobs(ir)
    views = loader.crops
    n = loader.num_samples
    per_pass = loader.epoch_size
    batches = per_pass if iterations is None else iterations
    bs = cfg.batch_size
    # One sum per quantity, kept on the device: no host sync per batch.
    total = {"top1": torch.zeros((), dtype=torch.float64),
             "top5": torch.zeros((), dtype=torch.float64),
             "loss": torch.zeros((), dtype=torch.float64)}
    sums: dict[str, torch.Tensor] = {}
    images = 0
    wanted = [pred, *(o for o in net.outputs if o != pred)] if feeds.label else [pred]
    bar = Bar(stream, fmt, "test", batches)
    t0 = _time.perf_counter()
    try:
        with torch.no_grad():
            for b in range(batches):
                x, y = loader.next_batch()
                k = min(bs, n - (b % per_pass) * bs)  # a pass's last batch wraps: count once
                x, y = x[: k * views], y[:k]
                y_views = y.repeat_interleave(views) if views > 1 else y
                res = dict(net(outputs=wanted, **feeds.inputs(x, y_views)))
                scores = res[pred].float().reshape(k * views, -1)
                poison_metrics(res, metrics, scores)
                probs = scores if is_prob else torch.softmax(scores, dim=1)
                probs = average_crops(probs, views)
                for key, v in _scores_sums(probs, y.to(probs.device)).items():
                    total[key] = total[key].to(v.device) + v
                for o in wanted[1:]:
                    v = res[o]
                    if v.numel() == 1:
                        v = v.detach().reshape(()).double() * k
                        sums[o] = v if o not in sums else sums[o] + v.to(sums[o].device)
                images += k
                bar.advance()
    finally:
        bar.close()
    seconds = _time.perf_counter() - t0
    result: dict[str, Any] = {key: float(v.item()) / images for key, v in total.items()}
    result.update(images=images, batches=batches, crops=n_crops, mirror=mirror,
                  seconds=seconds,
                  outputs={o: float(v.item()) / images for o, v in sums.items()})
    if fmt == "json":  # json_line makes NaN null at the top level only
        outputs = {k: v if math.isfinite(v) else None for k, v in result["outputs"].items()}
        stream.write(json_line({**result, "outputs": outputs}) + "\n")
        stream.flush()
    elif fmt == "rich":
        _print_test(stream, ir.name, result)
    return result


def _trained_mirrored(train_net: ir.Net, default: bool) -> bool:
    """Whether the TRAIN phase's data is mirrored (``default`` where it has none)."""
    found = phase_data(train_net)
    return found.config.mirror if found is not None else default


def _scores_sums(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """One batch's top-1 and top-5 hits and cross-entropy (``-log p[label]``, with Caffe's
    ``max(p, FLT_MIN)``), summed over its images; all NaN where a score is NaN."""
    classes = probs.shape[1]
    top = probs.topk(min(5, classes), dim=1).indices
    hits = top == labels[:, None]
    picked = probs.gather(1, labels.clamp(0, classes - 1)[:, None])[:, 0]
    loss = -torch.log(picked.double().clamp_min(torch.finfo(torch.float32).tiny))
    bad = ~torch.isfinite(probs).all()
    nan = torch.tensor(math.nan, dtype=torch.float64, device=probs.device)
    out = {"top1": hits[:, 0].double().sum(), "top5": hits.any(dim=1).double().sum(),
           "loss": loss.sum()}
    return {k: torch.where(bad, nan, v) for k, v in out.items()}


def _print_test(stream: IO[str], name: str, result: Mapping[str, Any]) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False)
    views = "1 crop" if result["crops"] == 1 else (
        f"10 crops ({'with' if result['mirror'] else 'no'} mirrors)")
    console.print(f"{name}: {result['images']} images in {result['batches']} batches, "
                  f"{views}", markup=False)
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("top1", "top5", "loss"):
        table.add_row(k, f"{result[k]:.4f}")
    for k, v in result["outputs"].items():
        table.add_row(f"{k} (net)", f"{v:.4f}")
    table.add_row("seconds", f"{result['seconds']:.2f}")
    console.print(table)


# ------------------------------------------------------------------------------- time


class _Clock:
    """Per-layer forward times from the compiled net's layer hooks (``run_layers``),
    backward times from autograd node hooks.

    A layer's backward is the span from the first to the last of the autograd nodes its
    forward created (found by walking back from its outputs to its inputs): the autograd
    engine runs them one after another.
    """

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.forward: dict[str, float] = {}
        self.backward: dict[str, float] = {}
        self._t0: dict[str, float] = {}
        self._stops: dict[str, set[Any]] = {}
        self._bspan: dict[str, list[float]] = {}
        self.on = False

    def before(self, name: str, args: Sequence[Any]) -> None:
        if not self.on:
            return
        self._stops[name] = {a.grad_fn for a in args if isinstance(a, torch.Tensor)}
        self.sync()
        self._t0[name] = _time.perf_counter()

    def after(self, name: str, out: Any) -> None:
        if not self.on:
            return
        self.sync()
        dt = _time.perf_counter() - self._t0.pop(name)
        self.forward[name] = self.forward.get(name, 0.0) + dt
        outs = out if isinstance(out, tuple | list) else (out,)
        stops = self._stops.pop(name, set())
        todo: list[Node | None] = [o.grad_fn for o in outs
                                   if isinstance(o, torch.Tensor) and o.grad_fn is not None]
        seen: set[Any] = set()
        while todo:
            node = todo.pop()
            if node is None or node in stops or node in seen:
                continue
            seen.add(node)
            node.register_prehook(lambda grads, n=name: self._bmark(n))
            node.register_hook(lambda gi, go, n=name: self._bstop(n))
            todo.extend(nxt for nxt, _ in node.next_functions)

    def _bmark(self, name: str) -> None:
        self.sync()
        now = _time.perf_counter()
        span = self._bspan.setdefault(name, [now, now])
        span[0] = min(span[0], now)

    def _bstop(self, name: str) -> None:
        self.sync()
        now = _time.perf_counter()
        span = self._bspan.setdefault(name, [now, now])
        span[1] = max(span[1], now)

    def end_iteration(self) -> None:
        """Fold this iteration's backward spans into the totals."""
        for name, (a, b) in self._bspan.items():
            self.backward[name] = self.backward.get(name, 0.0) + (b - a)
        self._bspan.clear()


def time(
    spec_path: str | os.PathLike[str],
    *,
    iterations: int = 50,
    batch: int | None = None,
    devices: Mapping[str, str] | str | None = None,
    fmt: str = "rich",
    overrides: Mapping[str, str] | None = None,
    phase: str = "train",
    inputs: Mapping[str, tuple[int, ...]] | None = None,
    out: IO[str] | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool | None = None,
    cuda_graphs: bool | None = None,
) -> dict[str, Any]:
    """Time every layer's forward and backward pass, as ``caffe time`` does.

    Runs one untimed warm-up iteration, then ``iterations`` forward and backward passes of
    the ``phase`` net (TRAIN, as Caffe) on random input of its input shapes (labels 0), the
    batch from ``batch``, else the spec (data section or data layer), else 1. ``inputs``
    gives the ``(C, H, W)`` of data blobs whose shape the spec cannot know (``--input``).
    The backward pass starts from the loss, or from the sum of the outputs of a net without
    one; the input is made to require a gradient, so that the first layer's backward is
    timed in full.

    Returns ``layers`` (in order: ``name``, ``type``, ``forward_ms``, ``backward_ms``, the
    means per iteration), ``forward_ms``, ``backward_ms``, ``forward_backward_ms`` (means of
    the whole passes), ``total_ms``, ``iterations``, ``batch`` and ``device``. A compiled
    net (``compile``) runs as one graph: only the whole passes are timed then.
    """
    import netdsl

    _check_fmt(fmt)
    if iterations < 1:
        raise UsageError(f"--iterations must be at least 1, got {iterations}")
    stream = out if out is not None else sys.stdout
    setup = netdsl.load_training(spec_path, overrides)
    train_ir, test_ir = setup.train_net, setup.test_net
    ir = train_ir if phase == "train" else test_ir
    b = batch or _spec_batch(ir) or 1
    rt = effective_runtime(ir.runtime, precision=precision, channels_last=channels_last,
                           compile=compile, cuda_graphs=cuda_graphs)
    net = netdsl.compile(ir, phase, devices, batch=b, inputs=dict(inputs or {}), seed=0,
                         dtype=DTYPES[rt.precision], channels_last=rt.channels_last,
                         torch_compile=rt.compile, cuda_graphs=rt.cuda_graphs)
    net.train(phase == "train")
    device_types = {d.type for d in net.devices.values()}

    def sync() -> None:
        if "cuda" in device_types:
            torch.cuda.synchronize()

    clock = _Clock(sync)

    gen = torch.Generator().manual_seed(0)
    feed = {}
    for i in net.inputs:
        shape = net.shapes.blobs[i]
        if len(shape) == 1:
            feed[i] = torch.zeros(shape, dtype=torch.int64)
        else:
            feed[i] = torch.rand(shape, generator=gen).requires_grad_(True)

    def one() -> tuple[float, float]:
        sync()
        t0 = _time.perf_counter()
        res = net(**feed) if rt.compile else net.run_layers(clock.before, clock.after, **feed)
        sync()
        t1 = _time.perf_counter()
        if net.loss_weights:
            objective = net.loss(res)
        else:
            objective = sum(v.float().sum() for v in res.values() if v.requires_grad)
        if isinstance(objective, torch.Tensor) and objective.requires_grad:
            objective.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        sync()
        t2 = _time.perf_counter()
        clock.end_iteration()
        net.zero_grad(set_to_none=True)
        for t in feed.values():
            t.grad = None
        return t1 - t0, t2 - t1

    bar = Bar(stream, fmt, "time", iterations)
    try:
        one()  # warm-up, untimed
        clock.on = True
        fwd = bwd = 0.0
        start = _time.perf_counter()
        for _ in range(iterations):
            f, bk = one()
            fwd += f
            bwd += bk
            bar.advance()
        total = _time.perf_counter() - start
    finally:
        bar.close()
    ms = 1000.0 / iterations
    layers = []
    for lay in ir.layers:
        if lay.name in clock.forward:
            layers.append({
                "name": lay.name, "type": lay.type,
                "forward_ms": clock.forward[lay.name] * ms,
                "backward_ms": clock.backward.get(lay.name, 0.0) * ms,
            })
    result: dict[str, Any] = {
        "net": ir.name, "phase": phase, "batch": b, "iterations": iterations,
        "device": ", ".join(sorted(str(d) for d in set(net.devices.values()))),
        "layers": layers,
        "forward_ms": fwd * ms, "backward_ms": bwd * ms, "forward_backward_ms": (fwd + bwd) * ms,
        "total_ms": total * 1000.0,
    }
    if fmt == "json":
        stream.write(json_line(result) + "\n")
        stream.flush()
    elif fmt == "rich":
        _print_time(stream, result)
    return result


def _spec_batch(net: ir.Net) -> int:
    """The batch the spec implies: a data layer's, else the phase's data section's."""
    if net.batch:
        return net.batch
    return net.data.config.batch_size if net.data is not None else 0


def _print_time(stream: IO[str], r: Mapping[str, Any]) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False)
    console.print(f"{r['net']} ({r['phase']}): batch {r['batch']}, {r['iterations']} "
                  f"iterations on {r['device']}", markup=False)
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("layer")
    table.add_column("type")
    table.add_column("forward ms", justify="right")
    table.add_column("backward ms", justify="right")
    for lay in r["layers"]:
        table.add_row(lay["name"], lay["type"], f"{lay['forward_ms']:.3f}",
                      f"{lay['backward_ms']:.3f}")
    table.add_section()
    table.add_row("Average Forward pass", "", f"{r['forward_ms']:.3f}", "")
    table.add_row("Average Backward pass", "", "", f"{r['backward_ms']:.3f}")
    table.add_row("Average Forward-Backward", "", f"{r['forward_backward_ms']:.3f}", "")
    table.add_row("Total Time", "", f"{r['total_ms']:.3f}", "")
    console.print(table)
