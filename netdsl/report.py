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


def console_for_tables() -> Console:
    """A rich console; when piped, wide enough that tables are not cut at 80 columns."""
    import sys

    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def shapes_json(table: ShapeTable, plan: Any = None) -> dict[str, Any]:
    """The ``netdsl shapes --format json`` contract (keys fixed; more may be added)."""
    net = table.net
    layers = []
    for lay, row in zip(net.layers, table.layers, strict=True):
        layers.append({
            "name": lay.name,
            "type": lay.type,
            "bottoms": list(lay.bottoms),
            "tops": list(lay.tops),
            "top_shapes": [list(t) for t in row.tops],
            "params": row.params,
            "macs": row.macs,
            "devices": list(lay.devices),
            "param_shapes": {k: list(v) for k, v in row.blobs.items()},
            "activation_bytes": row.activation_bytes,
        })
    out: dict[str, Any] = {
        "name": net.name,
        "phase": net.phase.value,
        "batch": table.batch,
        "layers": layers,
        "blobs": {k: list(v) for k, v in table.blobs.items()},
        "total_params": table.total_params,
        "total_macs": table.total_macs,
        "macs_per_image": table.total_macs // table.batch,
        "total_activation_bytes": table.total_activation_bytes,
        "devices": list(net.devices),
        "inputs": list(net.inputs),
        "outputs": list(net.outputs),
    }
    if plan is not None:
        out["placement"] = plan.to_json()
    return out


def shapes_table(table: ShapeTable, plan: Any = None) -> None:
    from rich.table import Table
    from rich.text import Text

    net = table.net
    t = Table(title=Text(f"{net.name or net.path} · {net.phase.value} · batch {table.batch}"),
              header_style="bold", show_footer=True)
    multi = len(net.devices) > 1
    t.add_column("layer", footer="total")
    t.add_column("type")
    if multi:
        t.add_column("devices")
    t.add_column("bottoms → tops")
    t.add_column("top shape")
    t.add_column("params", justify="right", footer=f"{table.total_params:,}")
    t.add_column("MACs", justify="right", footer=human(table.total_macs))
    t.add_column("activations", justify="right", footer=human(table.total_activation_bytes, "B"))
    for lay, row in zip(net.layers, table.layers, strict=True):
        wiring = f"{', '.join(lay.bottoms) or '·'} → {', '.join(lay.tops) or '·'}"
        cells = [Text(lay.name), Text(lay.type)]
        if multi:
            cells.append(Text(",".join(lay.devices)))
        cells += [
            Text(wiring),
            Text(", ".join(_dims(s) for s in row.tops)),
            Text(f"{row.params:,}" if row.params else ""),
            Text(human(row.macs) if row.macs else ""),
            Text(human(row.activation_bytes, "B")),
        ]
        t.add_row(*cells)
    console = console_for_tables()
    console.print(t)
    per_image = table.total_macs // table.batch
    console.print(Text(f"{table.total_params:,} parameters · {per_image:,} MACs per image · "
                       f"outputs: {', '.join(net.outputs)}"))
    if plan is not None:
        plan.print(console)
