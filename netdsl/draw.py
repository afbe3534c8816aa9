"""``netdsl draw``: the placed graph as Graphviz, devices as clusters, shapes on edges.

Works from the placement plan, so what is drawn is what runs: one node per shard, inside
the cluster of its device, and every cross-device transfer as a dashed edge labelled
with its bytes per image. No torch involved.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .diagnostics import DataError, Span
from .files import checked_output, write_output
from .placement import Plan
from .shapes import ShapeTable


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _node_id(layer: str, device: str) -> str:
    # ':' would be read by Graphviz as a port separator
    return f"{layer}@{device}".replace(":", "_")


def to_dot(table: ShapeTable, plan: Plan) -> str:
    """DOT source of the placed net."""
    try:
        import graphviz
    except ImportError:
        raise DataError("drawing needs the graphviz package, which is not installed", None,
                        "pip install graphviz (or pip install 'netdsl[draw]')") from None

    net = table.net
    title = f"{net.name} ({net.phase.value})"
    g = graphviz.Digraph(net.name or "net",
                         graph_attr={"rankdir": "TB", "fontname": "Helvetica", "label": title},
                         node_attr={"shape": "box", "style": "rounded,filled",
                                    "fillcolor": "white", "fontname": "Helvetica",
                                    "fontsize": "10"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    devices = list(dict.fromkeys(s.device for lp in plan.layers for s in lp.shards))
    clusters = {d: graphviz.Digraph(name=f"cluster_{i}", graph_attr={
        "label": d, "style": "rounded,filled", "fillcolor": "#eef3fb" if i % 2 == 0
        else "#fbf1e8", "color": "#8899aa"}) for i, d in enumerate(devices)}
    writer: dict[tuple[str, str], str] = {}  # (blob, device) -> node that last wrote it
    shapes = {lay.name: row for lay, row in zip(net.layers, table.layers, strict=True)}
    for lay, lp in zip(net.layers, plan.layers, strict=True):
        row = shapes[lay.name]
        for shard in lp.shards:
            nid = _node_id(lay.name, shard.device)
            part = ""
            if shard.channels is not None and len(lp.shards) > 1:
                part = f"\\n[{shard.channels[0]}:{shard.channels[1]})"
            params = f"\\n{row.params:,} params" if row.params and len(lp.shards) == 1 else ""
            clusters[shard.device].node(nid, f"{lay.name}\\n{lay.type}{part}{params}",
                                        fillcolor="#dfe8d8" if lay.kind.is_data else "white")
            for inp in shard.inputs:
                blob_shape = table.blobs.get(inp.bottom, ())
                for b_index, bottom in enumerate(lay.bottoms):
                    if bottom == inp.bottom:
                        blob_shape = row.bottoms[b_index]
                        break
                moved = {t.src for t in inp.transfers}
                for piece in inp.pieces:
                    src = writer.get((inp.bottom, piece.device))
                    if src is None:
                        continue
                    if piece.device in moved:
                        nbytes = sum(t.bytes_per_image for t in inp.transfers
                                     if t.src == piece.device)
                        g.edge(src, nid, label=f"{inp.bottom} [{piece.start}:{piece.stop})\\n"
                               f"{nbytes:,} B/image", style="dashed", color="#c0392b",
                               fontcolor="#c0392b")
                    else:
                        part_shape = list(blob_shape)
                        if inp.axis < len(part_shape):
                            part_shape[inp.axis] = piece.stop - piece.start
                        g.edge(src, nid, label=_dims(tuple(part_shape)))
        for top in lay.tops:
            for shard in lp.shards:
                writer[(top, shard.device)] = _node_id(lay.name, shard.device)
    for c in clusters.values():
        g.subgraph(c)
    source: str = g.source
    return source


def draw(table: ShapeTable, plan: Plan, output: str | Path) -> Path:
    """Write DOT source (.dot/.gv) or render it with Graphviz's ``dot`` (.svg/.png/.pdf)."""
    out = checked_output(output, "the drawing")
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "pdf", "dot", "gv"):
        raise DataError(f"cannot draw to '{out.name}'", Span(str(out)),
                        "use a .svg, .png, .pdf, .dot or .gv file name")
    source = to_dot(table, plan)
    if fmt in ("dot", "gv"):
        return write_output(out, source, "the drawing")
    dot = shutil.which("dot")
    if dot is None:
        raise DataError(f"drawing {out.name} needs Graphviz's 'dot' program, which is not "
                        "installed", Span(str(out)),
                        "install Graphviz (apt-get install graphviz, brew install graphviz), "
                        "or write the source with -o net.dot")
    proc = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=source.encode(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise DataError(f"Graphviz failed to draw {out}: {proc.stderr.decode().strip()}",
                        Span(str(out)))
    return out
