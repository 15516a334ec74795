"""Where a run resumes from: the checkpoint it names, its run directory's last.ckpt, or a requeued SLURM job's."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from unet_upsampling.errors import CheckpointError

log = logging.getLogger(__name__)


def newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def resume_path(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """The checkpoint a run resumes from: ``ckpt_path``, ``last`` for the run directory's last.ckpt, or,
    in a SLURM job that was requeued (SLURM_RESTART_COUNT > 0), the newest checkpoint the job left."""
    if ckpt_path is None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
            found = newest([*run_dir.glob("hpc_ckpt_*.ckpt"), *run_dir.glob("checkpoints/last.ckpt")])
            if found:
                log.info("requeued SLURM job (restart %s): resuming from %s", os.environ["SLURM_RESTART_COUNT"], found)
            return found
        return None
    if str(ckpt_path) == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(
                f"ckpt_path=last: {last} does not exist. Point hydra.run.dir at the directory of the run to resume "
                f"(it holds checkpoints/last.ckpt), or pass ckpt_path=<file>"
            )
        return last
    return Path(ckpt_path).expanduser()
