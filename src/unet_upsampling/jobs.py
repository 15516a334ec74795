"""A run's job: its config however it was composed (``@hydra.main``, or ``compose(...)`` with or without hydra), and
its directory, which a job that fails before writing anything of its own does not leave behind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from unet_upsampling.runlock import LOCK_NAME


@contextmanager
def job_context(cfg: DictConfig) -> Iterator[DictConfig]:
    """The job's config without a ``hydra`` node, with the values that come from Hydra's runtime filled.

    Under ``@hydra.main`` it is the config as given. From ``compose(..., return_hydra_config=True)``
    the ``hydra`` node serves ``${hydra:...}`` (the run directory is ``hydra.run.dir``) while the
    context lasts; so does the node a caller gave to ``HydraConfig().set_config(cfg)`` before deleting it
    from the config (as lightning-hydra-template's tests do). From a plain ``compose(...)`` the run
    directory is ``<paths.log_dir>/<experiment_name>/runs/<time>`` and ``upsample_name`` the block's
    class name.
    """
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        if "hydra" not in cfg and previous is not None and OmegaConf.is_missing(previous.hydra.runtime, "output_dir"):
            cfg.hydra = previous.hydra  # set by the caller, not by a Hydra app: filled below as for compose()
        if "hydra" in cfg:
            hydra_config.set_config(cfg)  # first: hydra.run.dir may itself use ${hydra:...}
            if OmegaConf.is_missing(cfg.hydra.runtime, "output_dir"):
                with read_write(cfg.hydra):
                    cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
            hydra_config.set_config(cfg.copy())
            del cfg["hydra"]
        elif previous is None:
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            cfg.paths.output_dir = f"{cfg.paths.log_dir}/{cfg.experiment_name}/runs/{stamp}"
            if "upsample" in cfg:
                cfg.upsample_name = str(OmegaConf.select(cfg, "upsample._target_")).rsplit(".", 1)[-1]
    try:
        yield cfg
    finally:
        hydra_config.cfg = previous


def holds_nothing_of_its_own(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what is written before a job starts: ``.hydra/``, the job's log (``*.log``),
    the run lock and empty folders."""
    for path in run_dir.rglob("*"):
        parts = path.relative_to(run_dir).parts
        before = parts[0] == ".hydra" or (len(parts) == 1 and (path.suffix == ".log" or path.name == LOCK_NAME))
        if not (path.is_dir() or before):
            return False
    return True


@contextmanager
def no_empty_run_dir(run_dir: str | Path, log_dir: str | Path) -> Iterator[None]:
    """A run that fails (a bad config, missing data) before writing anything of its own leaves no run directory under
    ``log_dir``: its directory goes, and the folders above it up to ``log_dir`` that this leaves empty. Kept: a
    directory outside ``log_dir`` (the user named it: ``hydra.run.dir=DIR``), and a sweep member's, whose train.log
    tells the sweep's report why it failed."""
    try:
        yield
    except Exception:
        run, logs = Path(run_dir).resolve(), Path(log_dir).resolve()
        sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if not sweep and logs in run.parents and run.is_dir() and holds_nothing_of_its_own(run):
            shutil.rmtree(run)
            for parent in run.parents:
                if parent == logs or any(parent.iterdir()):
                    break
                parent.rmdir()
        raise
