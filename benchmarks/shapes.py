"""Time `netdsl shapes` work (parse through shape inference; imports excluded).

Runs on the ResNet-50 prototxt from ../shared/caffe (when present), on a generated
2,000-layer net and on chains of 2,000 and 8,000 in-place ReLUs (whose time per layer
must stay flat: binding a bottom to its latest writer was once quadratic), and prints the
median and best of several runs per stage, in ms.

    python benchmarks/shapes.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netdsl.build import build  # noqa: E402
from netdsl.caffe_compat import upgrade  # noqa: E402
from netdsl.parse import parse_file  # noqa: E402
from netdsl.shapes import infer_shapes  # noqa: E402


def generated_net(n_layers: int) -> str:
    """A plain chain of conv/relu pairs with a residual Eltwise every few layers."""
    lines = ['name: "generated"', 'input { name: "data" shape: [16, 32, 32] }']
    prev = "data"
    i = 0
    while i < n_layers - 1:
        lines.append(f'layer {{ name: "conv{i}" type: Convolution bottom: "{prev}" '
                     f"num_output: 16 kernel_size: 3 pad: 1 }}")
        lines.append(f'layer {{ name: "relu{i}" type: ReLU bottom: "conv{i}" top: "conv{i}" }}')
        lines.append(f'layer {{ name: "sum{i}" type: Eltwise bottom: ["conv{i}", "{prev}"] }}')
        prev = f"sum{i}"
        i += 3
    return "\n".join(lines) + "\n"


def inplace_chain(n_layers: int) -> str:
    """One convolution, then ``n_layers`` ReLUs all reading and writing the same blob."""
    lines = ['input { name: "data" shape: [1, 3, 8, 8] }',
             'layer { name: "c" type: Convolution bottom: "data" top: "x" num_output: 4 '
             "kernel_size: 1 }"]
    lines += [f'layer {{ name: "r{i}" type: ReLU bottom: "x" top: "x" }}'
              for i in range(n_layers)]
    return "\n".join(lines) + "\n"


def time_stages(path: Path, repeat: int) -> dict[str, list[float]]:
    from netdsl.resolve import default_loader, resolve

    times: dict[str, list[float]] = {"parse": [], "resolve": [], "build": [], "shapes": [],
                                     "total": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        f = upgrade(parse_file(path))
        t1 = time.perf_counter()
        spec = resolve(f, default_loader, {})
        t2 = time.perf_counter()
        net = build(spec, "test")
        t3 = time.perf_counter()
        infer_shapes(net)
        t4 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
            times[key].append(dt * 1e3)
    return times


def report(label: str, times: dict[str, list[float]]) -> None:
    parts = [f"{k} {statistics.median(v):.1f}" for k, v in times.items() if k != "total"]
    total = times["total"]
    print(f"{label}: total median {statistics.median(total):.1f} ms, best {min(total):.1f} ms "
          f"({', '.join(parts)} ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    resnet = ROOT.parent / "shared" / "caffe" / "prototxt" / "resnet50__ResNet-50-deploy.prototxt"
    if resnet.exists():
        report("ResNet-50 prototxt", time_stages(resnet, args.repeat))
    else:
        print("ResNet-50 prototxt: ../shared/caffe absent, skipped")
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "gen.net"
        gen.write_text(generated_net(2000))
        report("generated 2,000-layer net", time_stages(gen, max(3, args.repeat // 3)))
        per_layer = []
        for n in (2000, 8000):
            chain = Path(tmp) / f"chain{n}.net"
            chain.write_text(inplace_chain(n))
            times = time_stages(chain, 3)
            report(f"{n:,} in-place ReLUs", times)
            per_layer.append(statistics.median(times["total"]) / n)
        print(f"in-place chain: 8,000 vs 2,000 layers, time per layer ratio "
              f"{per_layer[1] / per_layer[0]:.2f} (1.0 is linear, 4.0 quadratic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
