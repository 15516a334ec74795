"""metrics.json (the one file reports read) and the closing summary, on the console and in the log."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from unet_upsampling.files import replaced
from unet_upsampling.measures import SPLITS, SUMMARY, Measure, shown_in

log = logging.getLogger(__name__)


def as_python(value: Any) -> Any:
    """Tensors to numbers; NaN (a class absent from a split) to None, which JSON writes as null."""
    value = value.item() if isinstance(value, torch.Tensor) else value
    return None if isinstance(value, float) and math.isnan(value) else value


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> Path:
    """Writes ``metrics`` as sorted JSON through ``files.replaced``, so readers never see half of it."""
    with replaced(path) as file:
        file.write((json.dumps({k: as_python(v) for k, v in sorted(metrics.items())}, indent=2) + "\n").encode())
    return path


def summary_rows(metrics: Mapping[str, Any], class_names: Sequence[str] = ()) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per measure of the catalogue shown in the summary (after Dice, its per-class values
    named by class) and one column per split present."""
    splits = [s for s in SPLITS if f"{s}/dice" in metrics]
    measures = [m for m in shown_in(SUMMARY) if m.per_split]
    per_class = [Measure(f"dice_c{i}", f"dice {n}", frozenset()) for i, n in enumerate(class_names)]
    rows = []
    for measure in [*measures[:1], *per_class, *measures[1:]]:
        values = [as_python(metrics.get(measure.key(s))) for s in splits]
        if any(v is not None for v in values):
            name = measure.label if measure in per_class else measure.name
            rows.append([name, *("-" if v is None else measure.format(v) for v in values)])
    return ["measure", *splits], rows


def print_summary(
    title: str, metrics: Mapping[str, Any], lines: Mapping[str, Any], class_names: Sequence[str] = ()
) -> None:
    """The summary table, then one line per entry of ``lines`` (checkpoint, run directory); also to the log."""
    header, rows = summary_rows(metrics, class_names)
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    console = Console(width=max(Console().width, 100))
    console.print(title, highlight=False)
    console.print(table)
    log.info("%s\n%s", title, "\n".join("  ".join(f"{cell:>12}" for cell in row) for row in [header, *rows]))
    for label, value in lines.items():
        console.print(f"{label}: {value}", soft_wrap=True, highlight=False)
        log.info("%s: %s", label, value)
