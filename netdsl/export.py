"""``netdsl export``: a compiled net as ONNX, checked with ``onnx.checker``.

The compiled net's forward runs a precomputed program of torch ops, so torch's
TorchScript-based exporter traces it directly. By default the exported graph ends at
what a deployed net returns: the net's outputs minus the losses and accuracies, or,
when nothing else is left (a train/test net), the blobs those layers score (``fc8``).

Kernels that ONNX has as one operator are written as that operator rather than as the
torch ops they are made of (:data:`_ONNX_OPS`): Caffe's cross-channel LRN is ONNX's
``LRN``, which computes the same formula (``x / (k + alpha/size * sum of x^2 over the
size channels centred on each)^beta``), so runtimes use their own LRN kernel for it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diagnostics import DataError, Span, UsageError
from .files import checked_output
from .layers.base import Role

if TYPE_CHECKING:
    import torch
    from torch import fx

    from .compiled import CompiledNet
    from .ir import Net

#: Layers a deployed net leaves out: they score its outputs against labels.
_SCORING = (Role.LOSS, Role.METRIC, Role.SINK)


def deploy_outputs(net: Net) -> tuple[str, ...]:
    """The blobs a deployed net would return (see the module docstring)."""
    scoring = [lay for lay in net.layers if lay.kind.role in _SCORING]
    scored = {t for lay in scoring for t in lay.tops}
    outs = [o for o in net.outputs if o not in scored]
    if outs:
        return tuple(outs)
    return tuple(dict.fromkeys(lay.bottoms[0] for lay in scoring if lay.bottoms))


def export_onnx(spec: str | Path, output: str | Path, *, phase: str = "test",
                outputs: Sequence[str] | None = None, batch: int = 1,
                overrides: Mapping[str, str] | None = None, weights: str | Path | None = None,
                opset: int = 17) -> Path:
    """Compile ``spec`` on the CPU (with ``weights`` if given) and write it as ONNX."""
    from . import compile as compile_net
    from . import load

    net = load(spec, phase, overrides)
    compiled = compile_net(net, devices="cpu", batch=batch).eval()
    if weights is not None:
        from .weights import load_net_weights

        load_net_weights(compiled, weights, strict=True)
    return export_compiled(compiled, output, outputs=outputs, opset=opset)


def export_compiled(compiled: CompiledNet, output: str | Path, *,
                    outputs: Sequence[str] | None = None, opset: int = 17) -> Path:
    """Write an already compiled net (CPU, eval mode) as ONNX and check the file."""
    import torch

    try:
        import onnx
    except ImportError:
        raise DataError("ONNX export needs the onnx package", Span(str(output)),
                        "pip install onnx (or pip install 'netdsl[export]')") from None
    checked_output(output, "the ONNX model")
    net = compiled.net
    chosen = tuple(outputs) if outputs else deploy_outputs(net)
    blobs = {t for lay in net.layers for t in lay.tops}
    for name in chosen:
        if name not in blobs:
            raise UsageError(f"--outputs names '{name}', which is not a blob of this net",
                             Span(net.path), "blobs: " + ", ".join(sorted(blobs)))
    required = sorted(compiled.required_inputs(chosen))
    table = compiled.shapes
    example = {n: torch.randn(*table.blobs[n]) for n in required}

    graph = _with_onnx_ops(compiled, chosen)

    class _Export(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = compiled

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            feeds = dict(zip(required, xs, strict=True))
            if graph is not None:
                order = [n.meta["blob"] for n in graph.graph.nodes if n.op == "placeholder"]
                return tuple(graph(*(feeds[n] for n in order)))
            out = self.net(outputs=list(chosen), **feeds)
            return tuple(out[o] for o in chosen)

    out_path = Path(output)
    dynamic = {n: {0: "batch"} for n in (*required, *chosen)}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            # eval(): the exporter restores the wrapper's mode, and with it the net's, on exit
            torch.onnx.export(_Export().eval(), tuple(example[n] for n in required),
                              str(out_path), input_names=list(required),
                              output_names=list(chosen), dynamic_axes=dynamic,
                              opset_version=opset, dynamo=False)
        onnx.checker.check_model(onnx.load(str(out_path)))
    except OSError as e:
        raise DataError(f"cannot write the ONNX model to {out_path}: {e.strerror or e}",
                        Span(str(out_path))) from None
    return out_path


# --------------------------------------------------------------------------- ONNX ops


def _onnx_lrn() -> Callable[..., torch.Tensor]:
    """netdsl's LRN kernel as an autograd function whose ``symbolic`` is ONNX's ``LRN``
    (the TorchScript exporter calls it instead of tracing the forward)."""
    import torch

    class _LRN(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, size: int, alpha: float, beta: float,
                    k: float) -> torch.Tensor:
            # The value only serves the trace: torch's own LRN, which is Caffe's for odd
            # sizes. (Traced here, netdsl's kernel, with its in-place slice-adds, makes
            # the exporter's peephole pass fail with an IndexError, torch 2.13.)
            return torch.nn.functional.local_response_norm(x, size, alpha, beta, k)

        @staticmethod
        def symbolic(g: Any, x: Any, size: int, alpha: float, beta: float, k: float) -> Any:
            return g.op("onnx::LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)

    def call(x: torch.Tensor, local_size: int, alpha: float, beta: float,
             k: float) -> torch.Tensor:
        out: torch.Tensor = _LRN.apply(x, local_size, alpha, beta, k)  # type: ignore[no-untyped-call]  # torch leaves apply unannotated
        return out

    return call


def _lrn_node(node: fx.Node) -> bool:
    """Point an LRN kernel's node at ONNX's ``LRN`` when it is the cross-channel form
    with an odd window (ONNX's window is Caffe's then); WITHIN_CHANNEL stays as traced."""
    from .kernels import lrn

    bound = inspect.signature(lrn.lrn).bind(*node.args, **node.kwargs)
    bound.apply_defaults()
    a = bound.arguments
    if str(a["region"]).upper() != lrn.ACROSS_CHANNELS or int(a["local_size"]) % 2 == 0:
        return False
    node.target = _onnx_lrn()
    node.args = (a["x"],)
    node.kwargs = {"local_size": int(a["local_size"]), "alpha": float(a["alpha"]),
                   "beta": float(a["beta"]), "k": float(a["k"])}
    return True


def _onnx_ops() -> dict[Callable[..., Any], Callable[[fx.Node], bool]]:
    """Kernel function -> the rewrite of its graph node into one ONNX operator."""
    from .kernels import lrn

    return {lrn.lrn: _lrn_node}


def _with_onnx_ops(compiled: CompiledNet, outputs: Sequence[str]) -> fx.GraphModule | None:
    """A copy of the compiled program computing ``outputs`` in which the kernels ONNX has
    as single operators call them (:func:`_onnx_ops`); None when there are none."""
    from torch import fx

    rewrites = _onnx_ops()
    program = compiled.graph_module(list(outputs)).graph
    if not any(n.op == "call_function" and n.target in rewrites for n in program.nodes):
        return None
    # a node-by-node copy: a deep copy would copy the owning module, parameters and all
    graph = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    graph.output(graph.graph_copy(program, values))
    changed = False
    for node in graph.nodes:
        rewrite = rewrites.get(node.target) if node.op == "call_function" else None
        if rewrite is not None:
            changed = rewrite(node) or changed
    return fx.GraphModule(compiled, graph) if changed else None
