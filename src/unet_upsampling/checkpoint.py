"""Checkpoints that rebuild their own model: the run's resolved config travels inside them.

Loading trusts nothing in the file: it is read with ``torch.load(weights_only=True)`` (tensors and
plain data only, no pickled objects), its state is what train.py writes (``checkpoint_state.check_state``),
its config may name only a network, an upsample block and the task (``trust.check_stored_task``), and no
path or URL in its callback and loop states reaches the filesystem or the network (``confine_states``).
``CheckpointTrust`` is that boundary for Lightning (resume, validate the best checkpoint), and writes
checkpoints atomically beside their destination.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from unet_upsampling.checkpoint_state import check_state, refused
from unet_upsampling.errors import CheckpointError, ConfigError
from unet_upsampling.files import replaced
from unet_upsampling.trust import check_stored_task, rebuild_task

log = logging.getLogger(__name__)

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
    check_state(checkpoint, source=str(path))
    check_stored_task(checkpoint[CONFIG_KEY], source=str(path))
    return checkpoint


def check_weights(weights: Any, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Refuses weights other than those of a network whose state_dict has ``shapes``: each name, each shape."""
    if not isinstance(weights, dict) or weights.keys() != shapes.keys():
        names = set(weights) if isinstance(weights, dict) else set()
        odd = sorted(names ^ shapes.keys())[:5]
        raise CheckpointError(
            f"{source}: its state_dict does not hold this run's network's weights (names missing or foreign: "
            f"{', '.join(odd)}). Refused: the file was not written by a run of this network, or was altered."
        )
    for name, shape in shapes.items():
        if not torch.is_tensor(weights[name]) or tuple(weights[name].shape) != shape:
            raise refused(source, f"state_dict[{name!r}]", weights[name], f"a tensor of shape {list(shape)} there")


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
    task.checkpoint_step = checkpoint["global_step"]
    return task.eval(), config


# fsspec reads a protocol (another filesystem, the network) from "<protocol>://" and from chains "a::b".
PROTOCOL_MARKS = ("://", "::")
# ModelCheckpoint's state: the paths Lightning restores and later removes or loads; the top-k record's paths, scores
# and best-k dict hang together (Lightning indexes best_k_models by kth_best_model_path).
PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path", "dirpath")
TOP_K_KEYS = ("best_model_path", "kth_best_model_path", "best_k_models")


def inside(value: object, directories: Sequence[Path], *, itself: bool = False) -> bool:
    """Whether ``value`` names an existing local ``.ckpt`` file directly in one of ``directories`` (or, ``itself``,
    one of them), after resolving ``..`` and symbolic links; never a URL, a relative path or a non-string."""
    if not isinstance(value, str) or any(mark in value for mark in PROTOCOL_MARKS) or not os.path.isabs(value):
        return False
    path = Path(value).resolve()
    if itself:
        return path in directories
    return path.parent in directories and path.suffix == ".ckpt" and path.is_file()


def confine_states(checkpoint: dict[str, Any], directories: Sequence[Path], source: str) -> list[str]:
    """Drops every path of the checkpoint's ModelCheckpoint states that is not ``inside`` the run's checkpoint
    ``directories`` (resolved), before Lightning restores them; returns the keys dropped, each logged.

    An unsafe path of the top-k record drops the whole record (best path and score, best-k dict, k-th path and
    value), which the callback then starts afresh; an unsafe ``last_model_path`` or ``dirpath`` goes alone.
    A string with a protocol anywhere else in the file but its stored config refuses it: this project writes none.
    """
    dropped = []
    for name, state in (checkpoint.get("callbacks") or {}).items():
        if not isinstance(state, dict) or not any(key in state for key in PATH_KEYS):
            continue
        unsafe = [
            key
            for key in PATH_KEYS
            if state.get(key) not in (None, "") and not inside(state[key], directories, itself=key == "dirpath")
        ]
        best_k = state.get("best_k_models", {})
        if not isinstance(best_k, dict) or not all(inside(path, directories) for path in best_k):
            unsafe.append("best_k_models")
        for key in unsafe:
            log.warning(
                "%s: dropped %s[%r]=%r: not a checkpoint file in this run's checkpoint directory (%s)",
                source,
                name,
                key,
                state[key],
                ", ".join(map(str, directories)),
            )
            dropped.append(f"{name}.{key}")
        if set(unsafe) & set(TOP_K_KEYS):
            state.update(best_model_path="", best_model_score=None)
            for key in ("best_k_models", "kth_best_model_path", "kth_value"):
                state.pop(key, None)
        for key in set(unsafe) & {"last_model_path", "dirpath"}:
            del state[key]
    for where, value in _strings({key: value for key, value in checkpoint.items() if key != CONFIG_KEY}):
        if any(mark in value for mark in PROTOCOL_MARKS):
            raise CheckpointError(
                f"{source}: {where} holds {value!r}, a URL; this project writes none into its checkpoints. Refused: "
                f"the file was altered, or was not written by this project's train.py."
            )
    return dropped


def _strings(node: Any, where: str = "") -> Iterable[tuple[str, str]]:
    """Every string in ``node`` (keys and values), with where it is."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key, f"{where}[{key!r}] (a key)")
            yield from _strings(value, f"{where}[{key!r}]" if where else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")


class CheckpointTrust(TorchCheckpointIO):
    """Lightning's checkpoint reads, writes and removals for a run whose checkpoints live in ``directories``.

    Load: ``read_checkpoint`` (weights_only, whatever Lightning asks; the stored config checked), then
    ``confine_states``. Save: through ``files.replaced`` (a new ``<file>.tmp-<pid>`` in the same directory, never
    a link planted there, fsynced, then renamed), so the file is whole, old or new, whatever the temporary
    directory is and whenever the process dies. Remove: only a ``.ckpt`` file directly in ``directories``, never
    recursively, never a URL.
    """

    def __init__(self, directories: Iterable[str | Path], module: torch.nn.Module | None = None):
        super().__init__()
        self.directories = tuple(dict.fromkeys(Path(d).resolve() for d in directories))  # once each, in order
        self.shapes = None if module is None else {k: tuple(v.shape) for k, v in module.state_dict().items()}

    @classmethod
    def of(cls, callbacks: Iterable[L.Callback], module: torch.nn.Module) -> CheckpointTrust:
        """The trust boundary of a run of ``module`` whose checkpoints are written by ``callbacks``'
        ModelCheckpoints."""
        return cls((c.dirpath for c in callbacks if isinstance(c, ModelCheckpoint) and c.dirpath), module)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        checkpoint = read_checkpoint(path)
        if self.shapes is not None:
            check_weights(checkpoint["state_dict"], self.shapes, str(path))
        confine_states(checkpoint, self.directories, str(path))
        return checkpoint

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or any(mark in str(path) for mark in PROTOCOL_MARKS):
            raise ConfigError(
                f"checkpoint {path}: checkpoints are written to local directories only (callbacks.*.dirpath), "
                f"without storage_options"
            )
        with replaced(path) as file:
            torch.save(checkpoint, file)

    def remove_checkpoint(self, path) -> None:
        if inside(str(path), self.directories):
            Path(path).unlink()
        else:
            log.warning("not removing %s: not a checkpoint file in %s", path, ", ".join(map(str, self.directories)))
