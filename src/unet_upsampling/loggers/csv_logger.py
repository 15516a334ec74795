"""Lightning's CSV logger made crash-safe (whole rows appended, a new column through a temporary file and a rename)
and made to keep a resumed run's rows."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from unet_upsampling.files import replaced


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and whole rows of a CSV file (none when it does not exist, or is a symbolic link, which is never
    read or written through): a last line without its line break, cut short by a process killed while appending
    it, is left out."""
    if path.is_symlink() or not path.is_file():
        return [], []
    with path.open(newline="") as file:
        text = file.read()
    reader = csv.DictReader(io.StringIO(text[: text.rfind("\n") + 1]))
    return list(reader.fieldnames or []), list(reader)


def append_rows(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Appends ``rows`` (of the file's ``header``) in one write: a process stopped by a signal stops before or after
    it, not inside a row (at worst, killed inside a write that crosses a page, it leaves a last line without its
    line break, which :func:`read_rows` leaves out)."""
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=list(header)).writerows(rows)
    data = buffer.getvalue().encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    try:
        while data:
            data = data[os.write(descriptor, data) :]
    finally:
        os.close(descriptor)


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes ``path`` through ``files.replaced``: a process stopped at any moment leaves the old file or the new
    one, never a truncated one."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header))
    writer.writeheader()
    writer.writerows(rows)
    with replaced(path) as file:
        file.write(buffer.getvalue().encode())


class CSVLogger(LightningCSVLogger):
    """``<save_dir>/<name>/metrics.csv``, written crash-safe at every logging call, that survives a resume.

    Lightning's writer appends to metrics.csv, and rewrites it in place when a new key appears: a kill
    during that rewrite lost the rows. Here a save whose rows bring a new key rewrites the file through
    :func:`write_rows`; the others append their rows in one write (:func:`append_rows`), so a save costs the
    same at the end of a long run as at its start.
    Lightning starts metrics.csv afresh in a non-empty directory. After ``resume_at(step)`` (train.py
    calls it with the checkpoint's global step) the rows logged before the checkpoint are kept: those of
    earlier steps and the validation of that step (a row is placed at the step of the weights it
    measured, so the checkpoint written after that validation follows it). The later ones, logged by
    the stopped run after its checkpoint, are dropped: the resumed run logs them again, so its file ends
    as the uninterrupted run's does.
    The old file is renamed aside (``.metrics.csv.resuming``) while the writer starts, so no moment of a
    resume leaves it lost.

    Lightning has no public API for the writer's pending rows and header: this reads and sets its
    ``metrics``, ``metrics_keys`` and ``metrics_file_path`` attributes (public names, not documented).
    """

    def __init__(self, *args, flush_logs_every_n_steps: int = 1, **kwargs):
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)
        self._resume_step: int | None = None

    def resume_at(self, step: int) -> None:
        self._resume_step = step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """Lightning's writer; a resumed run's first call keeps the rows logged before its checkpoint."""
        if self._resume_step is None:
            return super().experiment
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        aside = path.with_name(f".{path.name}.resuming")  # left by a resume stopped right here: the whole log
        if path.is_file() and not aside.is_file():
            os.replace(path, aside)
        writer = super().experiment  # would delete a metrics.csv it found
        if aside.is_file():
            header, rows = read_rows(aside)
            write_rows(path, header, before_checkpoint(rows, self._resume_step))
            writer.metrics_keys = header
            aside.unlink()
        self._resume_step = None
        return writer

    @rank_zero_only
    def save(self) -> None:
        writer = self.experiment
        if not writer.metrics:
            return
        path = Path(writer.metrics_file_path)
        keys = set().union(*writer.metrics)
        if path.is_file() and not path.is_symlink() and keys <= set(writer.metrics_keys):
            append_rows(path, writer.metrics_keys, writer.metrics)
        else:
            _, rows = read_rows(path)
            writer.metrics_keys = sorted(set(writer.metrics_keys) | keys)
            write_rows(path, writer.metrics_keys, [*rows, *writer.metrics])
        writer.metrics = []


def before_checkpoint(rows: Sequence[Mapping[str, str]], step: int) -> list[Mapping[str, str]]:
    """The rows of a metrics.csv logged before a checkpoint at ``step``, in the order they were logged: those of
    earlier steps and the validation of that step (a row is placed at the step of the weights it measured, and the
    checkpoint follows that validation), up to the first row logged after the checkpoint. The validation and test
    rows a stopped run wrote at its end (at the best checkpoint's step, earlier than ``step``) come after it."""
    kept = []
    for row in rows:
        if not row["step"]:
            continue
        validation = any(row.get(k) for k in row if k.startswith("val/"))
        if int(row["step"]) > step or (int(row["step"]) == step and not validation):
            break
        kept.append(row)
        if int(row["step"]) == step:
            break
    return kept
