"""Tables and JSON for the command line: ``shapes``; rich for people, JSON for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .shapes import ShapeTable

if TYPE_CHECKING:
    from rich.console import Console


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{int(n)}{unit}"


def console_for_tables(width: int | None = None) -> Console:
    """A rich console: the terminal's width; when piped, ``$COLUMNS`` if set, else wide
    enough that tables are not cut at 80 columns."""
    import os
    import sys

    from rich.console import Console

    if width is None and not sys.stdout.isatty():
        cols = os.environ.get("COLUMNS", "")
        width = int(cols) if cols.isdigit() and int(cols) > 0 else 200
    return Console(width=width, highlight=False)


#: Each data source's pixel range as it produces it (Caffe's: 0..255 for images read
#: as uint8; the embedded digits and the synthetic source are 0..1 floats).
PIXEL_RANGES = {"digits": "0..1", "synthetic": "0..1", "folder": "0..255", "list": "0..255",
                "lmdb": "0..255 (0..1 for float datums)"}


def data_line(net: Any) -> str | None:
    """``data (train): digits · pixels 0..1 · batch 64``: where examples come from and the
    range of the pixels before ``mean_value``/``scale``, and after them."""
    pd = net.data
    if pd is None:
        return None
    cfg = pd.config
    source = cfg.source + (f" {cfg.path}" if cfg.path else "")
    rng = PIXEL_RANGES.get(cfg.source, "0..255")
    parts = [f"data ({net.phase.value}): {source}", f"pixels {rng}"]
    mean = bool(cfg.mean_value) or bool(cfg.mean_file)
    if mean or cfg.scale != 1.0:
        parts.append("to the net: " + ("(x − mean)" if mean else "x")
                     + (f" × {cfg.scale:g}" if cfg.scale != 1.0 else ""))
    parts.append(f"batch {cfg.batch_size}")
    return " · ".join(parts)


def activations(table: ShapeTable) -> list[int | None]:
    """Each layer's new activation bytes: the tops it does not write in place (None for a
    layer that writes all of them in place: its blob is counted where it was made)."""
    from .layers.base import count
    from .shapes import BYTES_PER_ELEMENT

    out: list[int | None] = []
    for lay, row in zip(table.net.layers, table.layers, strict=True):
        fresh = [shape for name, shape in zip(lay.tops, row.tops, strict=True)
                 if name not in lay.bottoms]
        if lay.tops and not fresh:
            out.append(None)
        else:
            out.append(sum(count(s) for s in fresh) * BYTES_PER_ELEMENT)
    return out


def total_activations(table: ShapeTable) -> int:
    """Activation bytes of the whole net, each blob once (in-place layers add nothing)."""
    return sum(a for a in activations(table) if a)


def layer_devices(net: Any, plan: Any) -> list[str]:
    """The devices column: the logical devices each layer's shards run on, as the
    placement plan has them (``view`` for a layer that computes nothing)."""
    if plan is None:
        return [",".join(lay.devices) for lay in net.layers]
    out = []
    for lay in net.layers:
        lp = plan.layer(lay.name)
        used = {d for sh in lp.shards for d in sh.logical}
        out.append(",".join(d for d in net.devices if d in used) if lp.shards else "view")
    return out


def shapes_json(table: ShapeTable, plan: Any = None, batch_from: str | None = None
                ) -> dict[str, Any]:
    """The ``netdsl shapes --format json`` contract (keys fixed; more may be added)."""
    net = table.net
    layers = []
    acts = activations(table)
    multi = len(net.devices) > 1
    devices = layer_devices(net, plan if plan is not None or not multi else _plan(table))
    for lay, row, act, devs in zip(net.layers, table.layers, acts, devices, strict=True):
        layers.append({
            "name": lay.name,
            "type": lay.type,
            "bottoms": list(lay.bottoms),
            "tops": list(lay.tops),
            "top_shapes": [list(t) for t in row.tops],
            "params": row.params,
            "macs": row.macs,
            "devices": devs.split(",") if devs != "view" else [],
            "param_shapes": {k: list(v) for k, v in row.blobs.items()},
            "activation_bytes": act or 0,
            "in_place": act is None,
        })
    out: dict[str, Any] = {
        "name": net.name,
        "phase": net.phase.value,
        "batch": table.batch,
        "batch_from": batch_from or "",
        "level": net.level,
        "stages": list(net.stages),
        "layers": layers,
        "blobs": {k: list(v) for k, v in table.blobs.items()},
        "total_params": table.total_params,
        "total_macs": table.total_macs,
        "macs_per_image": table.total_macs // table.batch,
        "total_activation_bytes": total_activations(table),
        "devices": list(net.devices),
        "inputs": list(net.inputs),
        "outputs": list(net.outputs),
    }
    if net.data is not None:
        out["data"] = {"source": net.data.config.source,
                       "pixel_range": PIXEL_RANGES.get(net.data.config.source, "0..255")}
    if plan is not None:
        out["placement"] = plan.to_json()
    return out


#: Below this many columns ``shapes`` uses its compact layout.
WIDE = 120


def _title(table: ShapeTable, batch_from: str | None) -> str:
    net = table.net
    state = ""
    if net.stages or net.level:
        state = " · " + ", ".join([f"stage {x}" for x in net.stages]
                                  + ([f"level {net.level}"] if net.level else []))
    src = f" ({batch_from})" if batch_from else ""
    return f"{net.name or net.path} · {net.phase.value}{state} · batch {table.batch}{src}"


def shapes_table(table: ShapeTable, plan: Any = None, batch_from: str | None = None,
                 console: Console | None = None) -> None:
    """The ``shapes`` table: wide (wiring in its own column, shapes with the batch), or,
    on a console narrower than ``WIDE``, compact (per-example shapes, names wrapped at
    ``/`` and ``_``, the wiring under a layer's name only where it is not simply the
    previous layer's output)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = console or console_for_tables()
    net = table.net
    compact = console.width < WIDE
    multi = len(net.devices) > 1
    acts = activations(table)
    devices = layer_devices(net, plan if plan is not None or not multi else _plan(table))
    title = _title(table, batch_from) + (" · shapes per example" if compact else "")
    rows: list[list[str]] = []
    prev: str | None = None
    for lay, row, act, devs in zip(net.layers, table.layers, acts, devices, strict=True):
        if compact:
            shapes = ", ".join(_dims(s[1:]) if s else _dims(s) for s in row.tops)
        else:
            shapes = ", ".join(_dims(s) for s in row.tops)
        cells = [lay.name, lay.type] + ([_short_devices(devs) if compact else devs]
                                        if multi else [])
        if not compact:
            cells.append(f"{', '.join(lay.bottoms) or '·'} → {', '.join(lay.tops) or '·'}")
        cells += [shapes, f"{row.params:,}" if row.params else "",
                  human(row.macs) if row.macs else "",
                  "in place" if act is None else human(act, "B"),
                  _wiring(lay, prev, act is None) if compact else ""]
        rows.append(cells)
        prev = lay.tops[0] if lay.tops else prev
    heads = ["layer", "type"] + (["devices"] if multi else []) + (
        [] if compact else ["bottoms → tops"]) + ["top shape", "params", "MACs",
                                                  "act." if compact else "activations"]
    feet = ["total", ""] + ([""] if multi else []) + ([] if compact else [""]) + [
        "", f"{table.total_params:,}", human(table.total_macs),
        human(total_activations(table), "B")]
    numeric = 3  # the last columns are right-aligned numbers
    t = Table(title=Text(title), header_style="bold", show_footer=True,
              box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, show_edge=not compact,
              padding=(0, 0, 0, 1) if compact else (0, 1))
    if compact:
        widths = [max(len(h), len(f), *(len(r[i]) for r in rows)) for i, (h, f)
                  in enumerate(zip(heads, feet, strict=True))]
        widths[0] = max(widths[0], *(len(r[-1]) for r in rows))  # the wiring lines
        widths[1] = min(widths[1], 12)  # SoftmaxWithLoss -> SoftmaxWith…
        # one space of padding left of each column, and the one-space column divider
        name_w = max(12, console.width - sum(widths[1:]) - 2 * len(heads) + 1)
        widths[0] = min(widths[0], name_w)
    for i, (h, f) in enumerate(zip(heads, feet, strict=True)):
        right = i >= len(heads) - numeric
        t.add_column(h, footer=f, justify="right" if right else "left",
                     no_wrap=compact, overflow="ellipsis" if compact else "fold",
                     width=widths[i] if compact else None)
    for cells in rows:
        wiring = cells.pop()
        if compact:
            name = Text("\n".join(_wrap(cells[0], widths[0], "  ")))
            if wiring:
                name.append("\n" + "\n".join(_wrap(wiring, widths[0], "  ")), style="dim")
            t.add_row(name, *(Text(c) for c in cells[1:]))
        else:
            t.add_row(*(Text(c) for c in cells))
    console.print(t)
    per_image = table.total_macs // table.batch
    console.print(Text(f"{table.total_params:,} parameters · {per_image:,} MACs per image · "
                       f"outputs: {', '.join(net.outputs)}"))
    line = data_line(net)
    if line:
        console.print(Text(line))
    if plan is not None:
        plan.print(console)


def _short_devices(devs: str) -> str:
    """``gpu:0,gpu:1`` as ``gpu:0,1``."""
    parts = devs.split(",")
    kinds = {p.split(":", 1)[0] for p in parts}
    if len(parts) > 1 and len(kinds) == 1 and all(":" in p for p in parts):
        return parts[0] + "," + ",".join(p.split(":", 1)[1] for p in parts[1:])
    return devs


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``width``, broken after ``/``, ``_``, ``,`` or a space
    where possible (``inception_3a/relu_5x5_`` + ``reduce``); continuation lines indented."""
    lines: list[str] = []
    rest = text
    while len(rest) > width:
        cut = max(rest.rfind(c, 0, width) for c in "/_, ") + 1
        if cut <= len(indent):
            cut = width
        lines.append(rest[:cut].rstrip())
        rest = indent + rest[cut:].lstrip()
    lines.append(rest)
    return lines


def _short_list(names: tuple[str, ...]) -> str:
    """``a/x, a/y`` as ``a/{x, y}`` (GoogLeNet's concats read four blobs of one module)."""
    if len(names) > 1:
        heads = {n.rsplit("/", 1)[0] for n in names if "/" in n}
        if len(heads) == 1 and all("/" in n for n in names):
            head = heads.pop()
            return f"{head}/{{{', '.join(n.rsplit('/', 1)[1] for n in names)}}}"
    return ", ".join(names)


def _plan(table: ShapeTable) -> Any:
    """The placement plan, for the devices column (None if the net cannot be placed:
    the column then shows the devices the spec gives)."""
    from .diagnostics import NetdslError
    from .placement import plan

    try:
        return plan(table.net, table)
    except NetdslError:
        return None


def _wiring(lay: Any, prev: str | None, in_place: bool) -> str:
    """The compact layout's wiring line: ``← a, b`` where the bottoms are not just the
    previous layer's output, ``→ t`` where the tops are not just the layer's name."""
    parts = []
    if lay.bottoms and list(lay.bottoms) != [prev]:
        parts.append("← " + _short_list(lay.bottoms))
    if lay.tops and list(lay.tops) != [lay.name] and not in_place:
        parts.append("→ " + _short_list(lay.tops))
    return "  ".join(parts)
