"""Checkpoints that rebuild their own model: the run's resolved config travels inside them.

Loading trusts nothing in the file: it is read with ``torch.load(weights_only=True)`` (tensors and
plain data only, no pickled objects), and its config may name only this project's classes
(``builders.rebuild_task``).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch

from unet_upsampling.builders import rebuild_task
from unet_upsampling.errors import CheckpointError

CONFIG_KEY = "unet_upsampling_config"


class StoreConfig(L.Callback):
    """Adds the run's resolved config (a plain dict) to every checkpoint."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config


def corrupt(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is corrupt or truncated ({detail}): use another checkpoint (last.ckpt or a step_*.ckpt of the "
        f"same run), or start the run again without ckpt_path"
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, read as data only; a CheckpointError naming the file otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        if "global" not in str(error).lower():
            raise corrupt(path, detail) from None
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain data, which could run "
            f"code ({detail}). This project's checkpoints never do; use one written by train.py."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise corrupt(path, f"{type(error).__name__}: {str(error).strip()[:200]}") from None
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} was not written by this project's train.py (it has no {CONFIG_KEY!r} entry)")
    return checkpoint


def load_checkpoint(path: str | Path) -> tuple[L.LightningModule, dict[str, Any]]:
    """The trained task (in eval mode, on CPU, without optimiser, ``checkpoint_step`` set) and the config of the run
    that wrote ``path``."""
    checkpoint = read_checkpoint(path)
    config = checkpoint[CONFIG_KEY]
    task = rebuild_task(config, source=str(path))
    try:
        task.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: its weights do not fit the network its config describes ({error})") from None
    step = checkpoint.get("global_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: its global_step={step!r} is not a step count; use one written by train.py")
    task.checkpoint_step = step
    return task.eval(), config
