"""Reading a sweep's run directories (each holds .hydra/ and, when it finished, metrics.json), or the
results.csv a report wrote from them."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.errors import ReportError

# Where and when a run ran (metrics.json's strings, provenance.py): a column each in results.csv.
PROVENANCE = ("git_commit", "cpu", "finished")
# results.csv: these columns, then one per metric.
RUN_COLUMNS = (
    "mode",
    "seed",
    "status",
    "run_dir",
    "error",
    "data",
    "model",
    "class_names",
    "lr",
    "max_steps",
    *PROVENANCE,
)


@dataclass
class Run:
    dir: Path
    mode: str
    seed: int
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    data: str | None = None  # the Hydra choices data= and model=
    model: str | None = None
    class_names: list[str] | None = None  # data.class_names, when the config has it
    lr: float | None = None  # task.optimizer.lr, when the config has it (a study may sweep it)
    max_steps: int | None = None  # trainer.max_steps, when the config has it and it bounds the run
    provenance: dict[str, str] = field(default_factory=dict)  # metrics.json's git_commit, cpu, finished (PROVENANCE)

    @property
    def steps(self) -> int | None:
        """The optimiser steps the run was given: ``max_steps``, else (results.csv of older reports) the step
        count its metrics.json recorded."""
        recorded = self.metrics.get("global_step")
        return self.max_steps if self.max_steps is not None else None if recorded is None else int(recorded)

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


def last_log_line(run_dir: Path, job_name: str) -> str | None:
    """The last line of the run's job log, ``<hydra.job.name>.log``."""
    for log in (run_dir / f"{job_name}.log", run_dir / "train.log"):
        lines = log.read_text().strip().splitlines() if log.is_file() else []
        if lines:
            return lines[-1]
    return None


def no_runs_error(root: Path) -> FileNotFoundError:
    """The error for a folder without runs, with its two usual causes: a sweep that never started, a wrong path."""
    return FileNotFoundError(
        f"no run directory (a folder holding .hydra/config.yaml) was found under {root}"
        + ("" if root.is_dir() else ", which does not exist")
        + ". Either the sweep failed before any job started (Hydra rejects an unknown option among the sweep "
        "values, such as upsample=deconv,nonexistent, before running anything: see the sweep's own error), "
        "or the path is wrong (pass the sweep directory, hydra.sweep.dir, or a folder above it)."
    )


def run_config(run_dir: Path) -> tuple[DictConfig, DictConfig]:
    """The run's config and its ``hydra`` node. Hydra saves the config unresolved, and an experiment's values may
    read Hydra's node (``${hydra:runtime.choices.data}``): here they read the run's own, from its hydra.yaml."""
    hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
    text = (run_dir / ".hydra" / "config.yaml").read_text().replace("${hydra:", "${hydra.")
    config = OmegaConf.merge(OmegaConf.create(text), {"hydra": hydra})
    return config, hydra


def collect_runs(root: Path) -> list[Run]:
    """Every run directory under ``root``, sorted by mode and seed; unfinished runs carry an error."""
    runs = []
    for config_path in sorted(root.rglob(".hydra/config.yaml")):
        run_dir = config_path.parent.parent
        config, hydra = run_config(run_dir)
        name = OmegaConf.select(hydra, "runtime.choices.upsample", default="?")
        run = Run(
            run_dir,
            mode_label(name, list(hydra.overrides.task)),
            int(config.seed),
            data=OmegaConf.select(hydra, "runtime.choices.data", default=None),
            model=OmegaConf.select(hydra, "runtime.choices.model", default=None),
        )
        lr = OmegaConf.select(config, "task.optimizer.lr", default=None)
        run.lr = None if lr is None else float(lr)
        max_steps = OmegaConf.select(config, "trainer.max_steps", default=None)
        run.max_steps = int(max_steps) if max_steps is not None and int(max_steps) > 0 else None
        names = OmegaConf.select(config, "data.class_names", default=None)
        run.class_names = None if names is None else [str(n) for n in names]
        metrics_path = run_dir / "metrics.json"
        if metrics_path.is_file():
            run.metrics = json.loads(metrics_path.read_text())
            run.provenance = {k: str(run.metrics.pop(k)) for k in PROVENANCE if run.metrics.get(k) is not None}
        else:
            tail = last_log_line(run_dir, OmegaConf.select(hydra, "job.name", default="train"))
            run.error = "no metrics.json" + (f" (last log line: {tail})" if tail else "")
        runs.append(run)
    if not runs:
        raise no_runs_error(root)
    return sorted(runs, key=lambda r: (r.mode, r.lr or 0.0, r.seed))


def csv_value(text: str) -> float | bool:
    """A metric as results.csv wrote it: a number (nan included) or a flag."""
    flags = {"True": True, "False": False}
    return flags[text] if text in flags else float(text)


def runs_from_csv(path: Path) -> tuple[list[Run], list[Run]]:
    """(runs, duplicates left out) as a report's results.csv lists them: a study without its run directories."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"mode", "seed", "status"} <= rows[0].keys():
        raise ReportError(f"{path} is not a results.csv written by scripts/report.py (no runs, or no mode/seed/status)")
    runs, duplicates = [], []
    for row in rows:
        names = row.get("class_names")
        run = Run(
            Path(row["run_dir"]),
            row["mode"],
            int(row["seed"]),
            {k: csv_value(v) for k, v in row.items() if k not in RUN_COLUMNS and v != ""},
            error=(row["error"] or "failed") if row["status"] == "failed" else None,
            data=row.get("data") or None,
            model=row.get("model") or None,
            class_names=names.split("|") if names else None,
            lr=float(row["lr"]) if row.get("lr") else None,
            max_steps=int(float(row["max_steps"])) if row.get("max_steps") else None,
            provenance={k: row[k] for k in PROVENANCE if row.get(k)},
        )
        (duplicates if row["status"] == "duplicate" else runs).append(run)
    return runs, duplicates


def results_files(folder: Path) -> list[Path]:
    """A folder's results.csv, else every .csv in it that a report wrote (its header starts with mode, seed,
    status): a published study, or a study's shards, one per block."""
    if (folder / "results.csv").is_file():
        return [folder / "results.csv"]
    return [p for p in sorted(folder.glob("*.csv")) if p.open().readline().startswith("mode,seed,status")]


def is_results_csv(path: Path) -> bool:
    """Whether ``path`` stands for results.csv files a report wrote: the file, or a folder holding such files
    (``results_files``) and no run directory."""
    path = Path(path)
    if path.is_file():
        return True
    return bool(results_files(path)) and next(path.rglob(".hydra/config.yaml"), None) is None


def load_runs(path: Path) -> tuple[Path, list[Run], list[Run], list[Run]]:
    """(folder, runs, counted, left out) of a sweep directory, or of the results.csv files a report wrote
    (``is_results_csv``)."""
    path = Path(path)
    if is_results_csv(path):
        files = [path] if path.is_file() else results_files(path)
        counted, left_out = [], []
        for csv_path in files:
            file_counted, file_left_out = runs_from_csv(csv_path)
            counted, left_out = counted + file_counted, left_out + file_left_out
        return files[0].parent, counted + left_out, counted, left_out
    runs = collect_runs(path)
    return (path, runs, *deduplicate(runs))


def deduplicate(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(runs to count, runs left out): of finished runs sharing mode, seed and learning rate, the newest
    metrics.json counts."""
    newest: dict[tuple[str, int, float | None], Run] = {}
    for run in runs:
        if run.ok:
            key = (run.mode, run.seed, run.lr)
            if key not in newest or mtime(run) > mtime(newest[key]):
                newest[key] = run
    counted = {r.dir for r in newest.values()}
    return [r for r in runs if not r.ok or r.dir in counted], [r for r in runs if r.ok and r.dir not in counted]


def mtime(run: Run) -> float:
    return (run.dir / "metrics.json").stat().st_mtime


def by_mode(runs: list[Run]) -> dict[str, list[Run]]:
    """The finished runs, grouped by mode (in the order of ``runs``)."""
    groups = defaultdict(list)
    for run in runs:
        if run.ok:
            groups[run.mode].append(run)
    return dict(groups)
