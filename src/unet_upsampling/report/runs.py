"""Reading a sweep's run directories: each holds .hydra/ and, when it finished, metrics.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf


@dataclass
class Run:
    dir: Path
    mode: str
    seed: int
    metrics: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays a run saved as ``<name>.npz`` (empty if it saved none)."""
        path = self.dir / f"{name}.npz"
        return dict(np.load(path)) if path.is_file() else {}


def mode_label(name: str, overrides: list[str]) -> str:
    """The upsample option, plus any upsample.* overrides: deconv, deconv_bilinear[trainable=true]."""
    extra = [o.split(".", 1)[1] for o in overrides if o.startswith("upsample.")]
    return f"{name}[{','.join(extra)}]" if extra else name


def collect_runs(root: Path) -> list[Run]:
    """Every run directory under ``root``, sorted by mode and seed; unfinished runs carry an error."""
    runs = []
    for config_path in sorted(root.rglob(".hydra/config.yaml")):
        run_dir = config_path.parent.parent
        config = OmegaConf.load(config_path)
        hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
        name = OmegaConf.select(hydra, "runtime.choices.upsample", default="?")
        run = Run(run_dir, mode_label(name, list(hydra.overrides.task)), int(config.seed))
        metrics_path = run_dir / "metrics.json"
        if metrics_path.is_file():
            run.metrics = json.loads(metrics_path.read_text())
        else:
            log = run_dir / f"{config.get('task_name', 'train')}.log"
            tail = log.read_text().strip().splitlines()[-1:] if log.is_file() else []
            run.error = "no metrics.json" + (f" (last log line: {tail[0]})" if tail else "")
        runs.append(run)
    return sorted(runs, key=lambda r: (r.mode, r.seed))
