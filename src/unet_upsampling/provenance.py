"""Where and when a run ran, for metrics.json: the project's commit, the CPU and the time it finished. A study pairs
its runs by seed on one machine: results are not bit-identical across CPU types."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

from unet_upsampling.loggers import git_commit


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """``AMD EPYC (family 25, model 1)`` from /proc/cpuinfo's first processor; elsewhere what ``platform`` says."""
    try:
        lines = Path(cpuinfo).read_text().split("\n\n")[0].splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    name = fields.get("model name") or platform.processor() or platform.machine()
    family, model = fields.get("cpu family"), fields.get("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def provenance() -> dict[str, str | None]:
    """``git_commit`` (None outside the project's checkout; ``+dirty`` with changes), ``cpu``, ``finished`` (UTC)."""
    return {
        "git_commit": git_commit(),
        "cpu": cpu_name(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
