"""A run's job: its config however it was composed (``@hydra.main``, or ``compose(...)`` with or without hydra)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write


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
