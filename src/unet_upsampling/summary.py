"""metrics.json (the one file reports read) and the closing console summary."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table


def as_python(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) else value


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> Path:
    """Writes ``metrics`` as sorted JSON via a temporary file, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({k: as_python(v) for k, v in sorted(metrics.items())}, indent=2) + "\n")
    tmp.replace(path)
    return path


def print_summary(title: str, metrics: Mapping[str, Any], lines: Mapping[str, Any]) -> None:
    """Macro metrics per split, then one line per entry of ``lines`` (checkpoint, run directory)."""
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(metrics.items()):
        if re.fullmatch(r"(val|test)/(dice|iou|boundary_f1|loss)", key):
            table.add_row(key, f"{as_python(value):.4f}")
    console = Console(width=max(Console().width, 100))
    console.print(title, highlight=False)
    console.print(table)
    for label, value in lines.items():
        console.print(f"{label}: {value}", soft_wrap=True, highlight=False)
