"""Lightning's CSV logger, made to keep the rows of the run it resumes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class CSVLogger(LightningCSVLogger):
    """``<save_dir>/<name>/metrics.csv``, flushed at every logging call, that survives a resume.

    Lightning starts metrics.csv afresh in a non-empty directory. After ``resume_at(step)`` (train.py
    calls it with the checkpoint's global step) the rows logged before that step are kept and the
    later ones, logged by the stopped run after its checkpoint, are dropped: the resumed run logs
    them again, so its file ends as the uninterrupted run's does.
    """

    def __init__(self, *args, flush_logs_every_n_steps: int = 1, **kwargs):
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)
        self._resume_step: int | None = None

    def resume_at(self, step: int) -> None:
        self._resume_step = step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
            kept = path.read_text() if self._resume_step is not None and path.is_file() else None
            writer = super().experiment  # deletes metrics.csv
            if kept:
                rows = list(csv.DictReader(io.StringIO(kept)))
                header = list(rows[0]) if rows else next(csv.reader(io.StringIO(kept)))
                with path.open("w", newline="") as file:
                    out = csv.DictWriter(file, fieldnames=header)
                    out.writeheader()
                    out.writerows(r for r in rows if r["step"] and int(r["step"]) < self._resume_step)
                writer.metrics_keys = list(header)
        return self._experiment
