"""SIGTERM and SIGINT before a run has started: kept, not acted on, until the run's ``stops.stop_on_signals`` takes
them over (stops.py says what a stop does). Imports no torch nor Lightning: the entry points set this up before
Hydra composes the config, and import those only for the job."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_kept: list[int] = []  # signals that came inside signals_deferred, before a run's stop_on_signals took over


def in_main_thread() -> bool:
    """Handlers can only be set in the main thread; elsewhere signals keep their handlers (and Lightning its own
    SIGTERM handling inside ``fit``)."""
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_deferred() -> Iterator[None]:
    """For an entry point's whole call: a SIGTERM/SIGINT before its run's ``stop_on_signals`` is kept, and stops
    the run at its first safe point; one after the run (Hydra closing) is dropped, as the run is complete."""
    if not in_main_thread():
        yield
        return

    def keep(signum: int, frame) -> None:
        _kept.append(signum)
        os.write(2, f"{signal.Signals(signum).name}: stopping as soon as the run has started\n".encode())

    _kept.clear()
    previous = {signum: signal.signal(signum, keep) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _kept.clear()


def take_kept() -> int | None:
    """The first signal kept so far (None if none), which the caller now handles."""
    signum = _kept[0] if _kept else None
    _kept.clear()
    return signum
