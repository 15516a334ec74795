"""A CSV logger that is crash-safe (whole rows appended, a new column through a temporary file and a rename) and keeps
a resumed run's rows."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from unet_upsampling.files import replaced

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.csv"


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


class CSVLogger(Logger):
    """``<save_dir>/<name>/<version>/metrics.csv``: one row per logging call, written crash-safe at once, kept across
    a resume. A Lightning logger through its public ``Logger`` interface alone.

    A row whose keys the file has is appended in one write (:func:`append_rows`), so a row costs the same at the
    end of a long run as at its start; a row that brings a new key rewrites the file through :func:`write_rows`
    (a kill during the rewrite leaves the old file). A run starts a new file. After ``resume_at(step)`` (train.py
    calls it with the checkpoint's global step) the rows logged before the checkpoint are kept: those of
    earlier steps and the validation of that step (a row is placed at the step of the weights it measured, so
    the checkpoint written after that validation follows it). The later ones, logged by the stopped run after
    its checkpoint, are dropped: the resumed run logs them again, so its file ends as the uninterrupted run's
    does. The old file is renamed aside (``.metrics.csv.resuming``) while the kept rows are written, so no
    moment of a resume leaves it lost.

    Metrics only: a run's settings are in ``.hydra/`` and ``metrics.json``.
    """

    def __init__(self, save_dir: str | Path, name: str = "csv", version: str = ""):
        super().__init__()
        self._save_dir, self._name, self._version = str(save_dir), name, version
        self._header: list[str] | None = None  # the file's columns, once this run started it
        self._resume_step: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        return str(Path(self._save_dir, self._name, self._version))

    def resume_at(self, step: int) -> None:
        self._resume_step = step

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the CSV holds metrics."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        path = Path(self.log_dir) / METRICS_FILE
        if self._header is None:
            self._header = self._start(path)
        row = {**metrics, "step": step}
        if self._header and set(row) <= set(self._header) and not path.is_symlink():
            append_rows(path, self._header, [row])
        else:
            _, rows = read_rows(path)
            self._header = sorted(set(self._header) | set(row))
            write_rows(path, self._header, [*rows, row])

    def _start(self, path: Path) -> list[str]:
        """The header of the file this run goes on with: none for a new run (an old file in its place is
        replaced), the kept rows' for a resumed one (``resume_at``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.resuming")  # left by a resume stopped right here: the whole log
        if self._resume_step is None:
            if path.is_file() or path.is_symlink():
                log.warning("%s: a new run in this directory; its rows replace the file's", path)
                path.unlink()
            return []
        if path.is_file() and not aside.is_file():
            os.replace(path, aside)
        if not aside.is_file():
            return []
        header, rows = read_rows(aside)
        write_rows(path, header, before_checkpoint(rows, self._resume_step))
        aside.unlink()
        return header


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
