"""train.py runs in their own processes, timed by ``StepTimer`` (bench/timing.py): their environment, the
overrides every one of them gets, and the run itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # this checkout
SCRIPTS = ROOT / "scripts"  # holds bench/, for the timer the runs load


def environment(checkout: Path = ROOT, threads: int | None = None) -> dict[str, str]:
    """This process's environment with ``checkout``'s src/ (its package and configs) and this checkout's scripts/
    (the timer, the same on every side) first on PYTHONPATH, DATA_DIR made absolute (the runs start in their own
    directories, where a relative one names nothing), and ``threads`` torch threads per run if given."""
    path = os.pathsep.join(p for p in (str(checkout / "src"), str(SCRIPTS), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    if env.get("DATA_DIR"):
        env["DATA_DIR"] = str(Path(env["DATA_DIR"]).resolve())
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def command(args, overrides: list[str], timer_path: str, sweep: bool = False, checkout: Path = ROOT) -> list[str]:
    """``python <checkout>/train.py [-m] overrides...`` on ``args.device`` with the StepTimer writing to
    ``timer_path``; host syncs are counted in single runs only (the sync counter wraps tensor methods)."""
    return [
        sys.executable,
        str(checkout / "train.py"),
        *(["-m"] if sweep else []),
        *overrides,
        *(["trainer=gpu"] if args.device == "cuda" else ["trainer.accelerator=cpu"]),
        *(["trainer.precision=32-true"] if args.device == "cuda" and not args.bf16 else []),
        "+callbacks.step_timer._target_=bench.timing.StepTimer",
        f"+callbacks.step_timer.path={timer_path}",
        f"+callbacks.step_timer.count_syncs={not sweep}",
    ]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Runs ``command`` in ``cwd`` (``UNET_BENCH_T0``: the launch time, for the runs' start-up); its wall time."""
    start = time.perf_counter()
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=cwd, env={**env, "UNET_BENCH_T0": repr(time.time())}
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return wall
