"""Several runs of a sweep side by side on one GPU, and the host's CPUs split between them.

A single run of the study's network leaves an H200 nearly idle (a step is bound by kernel launches,
docs/performance.md), so a sweep on one GPU runs ``runs_per_gpu`` jobs at once (the joblib launcher's
``n_jobs``). The config asks for that number with ``${unet.packed_jobs:N}``, which is N where a CUDA
device is visible and 1 where none is, so the same command runs one run at a time on a CPU. Every job
shares the device the trainer picks (``trainer.devices=1``: the first one), and at its start
``SplitThreads`` gives it its share of the host's CPUs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def packed_jobs(runs_per_gpu: int) -> int:
    """Jobs to run at once: ``runs_per_gpu`` where CUDA is visible (all on one device), else 1."""
    import torch  # here, not at the top: the package imports this module, and must not load torch for it

    return int(runs_per_gpu) if torch.cuda.is_available() and torch.cuda.device_count() > 0 else 1


def host_cpus() -> int:
    """The CPUs this process may run on (its affinity: what a container or taskset grants, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_share(jobs: int, cpus: int | None = None, max_workers: int = 8) -> tuple[int, int]:
    """(torch threads, data workers) for one of ``jobs`` runs side by side: threads = cpus // jobs (at least 1);
    the workers take the share's other CPUs (threads - 1, at most ``max_workers``), the main process one."""
    threads = max(1, (cpus or host_cpus()) // max(1, int(jobs)))
    return threads, min(max_workers, threads - 1)


def side_by_side(n_jobs: int, mode: Any) -> int:
    """Runs at once: the launcher's ``n_jobs`` in a sweep (``-m``), 1 for a single run (Hydra's RUN mode)."""
    return int(n_jobs) if mode in (RunMode.MULTIRUN, "MULTIRUN") else 1


def data_workers(n_jobs: int, mode: Any) -> int:
    """``${unet.data_workers:${hydra:launcher.n_jobs},${hydra:mode}}``: a run's data loader workers (``cpu_share``)."""
    return cpu_share(side_by_side(n_jobs, mode))[1]


class SplitThreads(Callback):
    """Hydra callback (``hydra.callbacks``): at each job's start, torch and OpenMP threads = its CPU share.

    Runs in the job's process (a joblib worker too), before train.py builds anything; the environment
    variables reach the processes the job starts (data loader workers).
    """

    def __init__(self, n_jobs: int):
        self.n_jobs = int(n_jobs)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = side_by_side(self.n_jobs, config.hydra.mode)
        threads, workers = cpu_share(jobs)
        import torch

        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        log.info(
            "%d run(s) side by side on %d CPUs: %d torch thread(s) and %d data worker(s) each",
            jobs,
            host_cpus(),
            threads,
            workers,
        )


def register_resolvers() -> None:
    """``unet.packed_jobs`` and ``unet.data_workers``, for the configs (registered when the package is imported)."""
    for name, fn in (("unet.packed_jobs", packed_jobs), ("unet.data_workers", data_workers)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
