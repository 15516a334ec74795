"""The run's files are written whole and only where they are named.

Each file (checkpoints, metrics.json, metrics.csv, artifacts.npz, figures) is written to a temporary
file beside it, created new (``O_EXCL | O_NOFOLLOW``: a file or symbolic link planted under that name is
never written through), flushed to disk and renamed over the destination. The rename replaces whatever
was there, a symbolic link included, and never writes through it; a process stopped at any moment leaves
the old file or the new one, whole, and at worst its ``<name>.tmp-<pid>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replaced(path: str | Path) -> Iterator[BinaryIO]:
    """A new file to write ``path``'s contents to; when the block ends, flushed to disk and renamed over ``path``.

    The temporary file is ``<path>.tmp-<pid>``: an entry of that name (left by a killed process with the same
    pid, or planted there) is removed first, never written through. An exception in the block leaves ``path``
    as it was and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power loss
    finally:
        os.close(directory)
