"""One run at a time in a run directory: ``<run dir>/train.lock``.

Two runs writing one directory (the same ``hydra.run.dir``) would overwrite each other's checkpoints,
logs and metrics. The first run holds an OS lock (``flock``) on ``train.lock``, which names its pid,
host and start time; a second run is refused before it writes anything there (under ``train.py``,
the Hydra callback :class:`RunDirLock` takes the lock before Hydra writes ``.hydra/``). The OS
releases the lock when its process ends, however it ends: a ``train.lock`` left by a process that was
killed (kill -9, a node going down) is taken over, with a warning naming it. A run removes its lock
file when it ends, so a resumed run (``ckpt_path=last``) in the same directory starts as any other.
``train.lock`` is opened with ``O_NOFOLLOW`` and must be a regular file with one name: a symbolic link,
a directory, a FIFO or a hard link planted under that name is refused, never written through or truncated.

Not the ``filelock`` package (installed with torch), though it also locks with ``flock``: a refused
run names the holder from the record in the locked file, read through the descriptor whose lock it
failed to take, and filelock hands its descriptor to the caller only once the lock is taken
(``on_acquired``, in recent versions), so the record would need a second open of the path, with the
``O_NOFOLLOW`` and regular-file checks again. It also leaves its file in place when released, where a
run removes its own, and what it guarantees depends on its version, which torch does not bound: before
3.20.1 it opens with ``O_TRUNC`` and follows symbolic links (CVE-2025-68146), truncating a planted
link's target and the holder's record alike. It would replace one ``os.open`` and one ``flock`` here.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from unet_upsampling.checks import check_writable
from unet_upsampling.errors import OutputError

log = logging.getLogger(__name__)
LOCK_NAME = "train.lock"
_held: dict[Path, int] = {}  # lock file -> its open descriptor, for the locks this process holds
_taken_over: dict[Path, dict[str, Any]] = {}  # lock file -> the record of the gone run it was taken from


def _holder(fd: int) -> dict[str, Any]:
    """The record a lock file holds ({} when empty or unreadable: a run that died while writing it)."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _describe(record: dict[str, Any]) -> str:
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}, started {record.get('started', '?')}"


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _refuse(path: Path, record: dict[str, Any]) -> OutputError:
    return OutputError(
        f"{path.parent} is in use by another run ({_describe(record)}; its lock is {path}). Wait for that run "
        f"to end, or give this one its own directory (hydra.run.dir=...). If that process is no longer running "
        f"(it was on a machine that went down), delete {path} and start again."
    )


def _open(path: Path) -> int:
    """The lock file, opened for writing without following a symbolic link; a ``train.lock`` that is not a regular
    file of its own (a link, a directory, a FIFO, a second name of another file) is refused, never written."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        what = {errno.ELOOP: "a symbolic link", errno.EISDIR: "a directory"}.get(error.errno, error.strerror)
        raise _unusable(path, what) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise _unusable(path, "another name of a file" if stat.S_ISREG(info.st_mode) else "not a regular file")
    return fd


def _unusable(path: Path, what: str) -> OutputError:
    return OutputError(
        f"{path} cannot be this run directory's lock ({what}): a run's lock is a regular file of that name, and a "
        f"run never writes through a link or into another file. Remove {path} (it holds nothing of a run's) and "
        f"start again."
    )


def acquire(run_dir: str | Path) -> None:
    """Takes the run directory's lock for this process (once; rank 0 only under DDP), or refuses naming the
    holder. Held until :func:`release`."""
    path = (Path(run_dir) / LOCK_NAME).absolute()
    if path in _held or rank_zero_only.rank != 0:
        return
    check_writable([path.parent])  # an unwritable run directory is named as such, not as a traceback here
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _holder(fd)
            os.close(fd)
            raise _refuse(path, record) from None
        except OSError:  # a filesystem without locks: the record decides, for processes on this host
            record = _holder(fd)
            on_this_host = record.get("host") == socket.gethostname() and record.get("pid") != os.getpid()
            if on_this_host and _alive(record.get("pid")):
                os.close(fd)
                raise _refuse(path, record) from None
        try:
            if os.fstat(fd).st_ino == os.lstat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed the file as we opened it: lock the one that is there now
    if previous := _holder(fd):
        _taken_over[path] = previous
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    _held[path] = fd


def release(run_dir: str | Path) -> None:
    """Removes the lock file and releases the lock, if this process holds it."""
    path = (Path(run_dir) / LOCK_NAME).absolute()
    fd = _held.pop(path, None)
    if fd is not None:
        path.unlink(missing_ok=True)  # before the lock goes: a run that opened the old file sees it gone
        os.close(fd)


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """The lock for the length of a run (taken here unless the Hydra callback took it already), released at
    its end however it ends."""
    acquire(run_dir)
    path = (Path(run_dir) / LOCK_NAME).absolute()
    if previous := _taken_over.pop(path, None):  # said here, where the run's own log (train.log) is set up
        log.warning("%s: taking over the lock of a run that is no longer running (%s)", path, _describe(previous))
    try:
        yield
    finally:
        release(run_dir)


class RunDirLock(Callback):
    """Hydra callback (``hydra.callbacks``): takes ``hydra.run.dir``'s lock before Hydra writes ``.hydra/`` and
    the job log there; ``train()`` releases it when the run ends."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Hydra turns a callback's exceptions into warnings and goes on: a refusal exits here, as a UserError
        would (its message alone, exit code 1)."""
        try:
            acquire(config.hydra.run.dir)
        except OutputError as error:
            print(error, file=sys.stderr)
            raise SystemExit(1) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(config.hydra.run.dir)
