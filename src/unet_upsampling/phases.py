"""How long each phase of a run took: train.log's closing line and metrics.json's ``time/<phase>_s``."""

from __future__ import annotations

import time

import unet_upsampling

PHASES = {
    "startup": "start-up",
    "init_validation": "validation before training",
    "training": "training",
    "fit_validations": "validations while training",
    "end_validation": "validation at the end",
    "test": "test",
    "results": "writing the results",
}


def run_start() -> float:
    """When the run began: at the package's import for the first run of a process (the imports of torch and
    Lightning are its start-up), now for a later one (a multirun's next job, a test)."""
    start = getattr(unet_upsampling, "STARTED", None)
    unet_upsampling.STARTED = None
    return time.perf_counter() if start is None else start


class PhaseTimes:
    """Seconds per phase of ``PHASES``, each running from its ``begin`` to the next ``begin``; ``split`` moves
    seconds measured inside a phase (the validations while fitting) to a phase of their own."""

    def __init__(self, start: float) -> None:
        self.seconds: dict[str, float] = {}
        self.phase, self.since = "startup", start

    def begin(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + now - self.since
        self.phase, self.since = phase, now

    def split(self, seconds: float, into: str, out_of: str) -> None:
        self.seconds[out_of] = self.seconds.get(out_of, 0.0) - seconds
        self.seconds[into] = self.seconds.get(into, 0.0) + seconds

    def metrics(self, probes: float) -> dict[str, float]:
        """``time/<phase>_s`` of every phase so far, ``time/probes_s`` (the artifact probe's share of them) and
        ``time/total_s``."""
        self.begin(self.phase)
        times = {f"time/{phase}_s": s for phase, s in self.seconds.items()}
        return times | {"time/probes_s": probes, "time/total_s": sum(self.seconds.values())}

    def line(self, probes: float) -> str:
        """``start-up 8.1 s, training 240.3 s, ...; probes 3.2 s of them; total 275 s``."""
        parts = [f"{PHASES[p]} {s:.1f} s" for p, s in self.seconds.items() if p in PHASES]
        return (
            f"{', '.join(parts)}; the artifact probes {probes:.1f} s of these; total {sum(self.seconds.values()):.0f} s"
        )
