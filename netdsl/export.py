"""``netdsl export``: a compiled net as ONNX, checked with ``onnx.checker``.

The compiled net's forward runs a precomputed program of torch ops, so torch's
TorchScript-based exporter traces it directly. By default the exported graph ends at
what a deployed net returns: the net's outputs minus the losses and accuracies, or,
when nothing else is left (a train/test net), the blobs those layers score (``fc8``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .diagnostics import DataError, Span, UsageError
from .files import checked_output
from .layers.base import Role

if TYPE_CHECKING:
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

    class _Export(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = compiled

        def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.net(outputs=list(chosen), **dict(zip(required, xs, strict=True)))
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
