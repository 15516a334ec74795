"""Hydra + DDP: one run directory per run, however many processes train it.

Lightning's DDP launcher starts local ranks > 0 by running the script again with the same argv
(``python train.py <argv> hydra.run.dir=<rank 0's run.dir>``). Under a multirun (``-m``, an Optuna
search) that argv is the whole sweep: each child would run a sweep of its own, in a second
timestamped directory, with its own trial parameters. So rank 0 exports the one job it runs (its
overrides and output directory), and a child that rank 0 started replaces its argv by that job
before Hydra parses it. Processes started by a cluster (SLURM via submitit, torchrun) already carry
their own argv and are left alone.

Between the jobs of a multirun, rank 0 also tears down what the launcher left behind (the process
group and the ``LOCAL_RANK``/``MASTER_PORT``/... variables), so that the next job starts its own
processes rather than taking the previous job's for already running.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

JOB_ENV = "UNET_UPSAMPLING_DDP_JOB"
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Hydra overrides a child must repeat to behave like rank 0 (the rest choose sweeps and directories).
_HYDRA_KEPT = ("hydra.job.chdir", "hydra.job.env_set", "hydra.verbose", "hydra/job_logging", "hydra/hydra_logging")


def share_job(output_dir: str | Path) -> dict[str, str | None]:
    """Called by rank 0 before it builds the Trainer: exports the running Hydra job for DDP children.

    Returns the launcher variables as they were, for :func:`end_job`.
    """
    from hydra.core.hydra_config import HydraConfig

    before = {key: os.environ.get(key) for key in (*LAUNCHER_ENV, JOB_ENV)}
    if HydraConfig.initialized() and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        overrides = HydraConfig.get().overrides
        kept = [o for o in overrides.hydra if o.lstrip("+~").startswith(_HYDRA_KEPT)]
        os.environ[JOB_ENV] = json.dumps(
            {"pid": os.getpid(), "output_dir": str(Path(output_dir).resolve()), "overrides": [*overrides.task, *kept]}
        )
    return before


def end_job(before: Mapping[str, str | None]) -> None:
    """Called at the end of a job: destroys the process group and restores the launcher variables."""
    import torch  # here: entry.py calls adopt_rank_zero_job before any import of torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # rank 0 hosts the store: let every rank finish first
        torch.distributed.destroy_process_group()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def adopt_rank_zero_job() -> bool:
    """In a DDP child started by rank 0's launcher: turns ``sys.argv`` into rank 0's current job.

    Returns whether it did (False in rank 0, single-process runs and cluster-started processes).
    """
    raw, local_rank = os.environ.get(JOB_ENV), os.environ.get("LOCAL_RANK", "0")
    if not raw or local_rank == "0":
        return False
    job = json.loads(raw)
    if job["pid"] != os.getppid():  # inherited by something other than a child of rank 0
        return False
    run_dir = job["output_dir"].replace("\\", "\\\\").replace('"', '\\"')
    sys.argv = [
        sys.argv[0],
        *job["overrides"],
        f'hydra.run.dir="{run_dir}"',
        "hydra.mode=RUN",  # one job, even when the job's own overrides switch to MULTIRUN (hparams_search=optuna)
        "hydra.output_subdir=null",
        f"hydra.job.name=train_ddp_process_{local_rank}",
    ]
    return True
