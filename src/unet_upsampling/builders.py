"""Configs to objects: the one place that instantiates.

A run's own config (composed by Hydra from files and the command line) is instantiated as it is.
A stored config (inside a checkpoint) is data from a file that may come from anyone: it may name
only this project's classes for the network and task, and albumentations transforms for the
evaluation pipeline (for eval.py also the project's DataModule and split factories); anything else
is refused before any import or call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.data.datamodule import SegmentationDataModule, pipeline
from unet_upsampling.errors import CheckpointError, UserError
from unet_upsampling.task import SegmentationTask

PROJECT = "unet_upsampling."


@contextmanager
def user_errors_unwrapped() -> Iterator[None]:
    """A UserError raised inside a constructor reaches the user as itself, not wrapped by Hydra's instantiate."""
    try:
        yield
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    with user_errors_unwrapped():
        return instantiate(cfg.data)


def build_task(config: Mapping[str, Any]) -> SegmentationTask:
    """The task (LightningModule) with its network, fresh weights."""
    with user_errors_unwrapped():
        return instantiate(config["task"], net=instantiate(config["model"]))


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every entry of ``callbacks``; an entry set to null (``callbacks.progress_bar=null``) is left out."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(node) for node in (cfg.get("logger") or {}).values() if node is not None]


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, **overrides: Any) -> L.Trainer:
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def _is_project_class(obj: object) -> bool:
    return inspect.isclass(obj) and obj.__module__.startswith(PROJECT)


def _is_albumentations_transform(obj: object) -> bool:
    import albumentations as A

    return inspect.isclass(obj) and issubclass(obj, A.BasicTransform | A.BaseCompose)


def _admits(accept: Callable[[object], bool], target: str) -> bool:
    try:
        return accept(get_object(target))
    except Exception:  # not importable: refused like any other unknown target
        return False


def check_stored(node: Any, key: str, source: str, prefixes: tuple[str, ...], accept: Callable[[object], bool]) -> None:
    """Refuses (CheckpointError naming ``source`` and the key) a stored config that names anything but accepted classes.

    Every ``_target_`` must start with one of ``prefixes`` before it is imported, and then resolve
    to a class ``accept`` admits; interpolations (``${...}``) are refused too, as stored configs are
    resolved when written.
    """
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and not (
            isinstance(target, str) and target.startswith(prefixes) and _admits(accept, target)
        ):
            raise CheckpointError(
                f"{source}: {key}._target_={target!r} is not one of the classes a checkpoint may rebuild "
                f"({', '.join(p.rstrip('.') for p in prefixes)} only). Refused without running it: the file "
                f"was not written by this project's train.py, or was altered."
            )
        for name, value in node.items():
            check_stored(value, f"{key}.{name}", source, prefixes, accept)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            check_stored(value, f"{key}[{i}]", source, prefixes, accept)
    elif isinstance(node, str) and "${" in node:
        raise CheckpointError(f"{source}: {key}={node!r} is an interpolation; stored configs are resolved. Refused.")


def rebuild_task(config: Mapping[str, Any], source: str) -> SegmentationTask:
    """The task a stored config describes, for inference: network and metrics, no optimiser or schedule."""
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
        raise CheckpointError(f"{source}: its config has no model entry")
    task = {k: v for k, v in (config.get("task") or {}).items() if k not in ("optimizer", "scheduler")}
    for key, node in (("model", config["model"]), ("task", task)):
        check_stored(node, key, source, (PROJECT,), _is_project_class)
    model = {k: v for k, v in config["model"].items() if k != "pretrained"}  # its weights come from the checkpoint
    return build_task({"model": model, "task": task})


def rebuild_eval_transform(config: Mapping[str, Any], source: str) -> Callable:
    """The evaluation pipeline a stored config describes: its resize (data.scale), albumentations transforms, then
    its normalisation."""
    data = config.get("data") or {}
    if not isinstance(data.get("eval_transform"), list) or not isinstance(data.get("normalize"), Mapping):
        raise CheckpointError(f"{source}: its config has no data.eval_transform list and data.normalize")
    check_stored(
        data["eval_transform"], "data.eval_transform", source, ("albumentations.",), _is_albumentations_transform
    )
    normalize = {k: data["normalize"][k] for k in ("mean", "std")}
    check_stored(normalize, "data.normalize", source, (), lambda obj: False)
    scale = data.get("scale", 1.0)  # checkpoints from before data.scale: 1
    if not isinstance(scale, int | float):
        raise CheckpointError(f"{source}: its data.scale={scale!r} is not a number")
    return pipeline(instantiate(OmegaConf.create(data["eval_transform"])), normalize, scale)


def _is_data_source(obj: object) -> bool:
    """The project's split factories, the only callables a stored ``data.source`` may name."""
    from unet_upsampling.data.folder import folder_splits
    from unet_upsampling.data.synthetic import synthetic_splits
    from unet_upsampling.data.torchvision_sets import oxford_pet_splits, voc_splits

    return any(obj is source for source in (synthetic_splits, folder_splits, oxford_pet_splits, voc_splits))


def rebuild_datamodule(data: Mapping[str, Any], source: str) -> SegmentationDataModule:
    """The DataModule a stored ``data`` config describes, for evaluation (eval.py).

    Admitted: the project's DataModule, its split factories (synthetic, folders, torchvision sets) and
    albumentations transforms for the evaluation pipeline. The training pipeline is not rebuilt
    (evaluation draws no training batch), and a stored ``download`` is turned off: nothing read from a
    checkpoint makes the project reach the network.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("source"), Mapping) or "_target_" not in data:
        raise CheckpointError(f"{source}: its config has no data entry with a _target_ and a source")
    rest = {k: v for k, v in data.items() if k not in ("source", "train_transform", "eval_transform")}
    eval_transform = data.get("eval_transform", [])
    if not isinstance(eval_transform, list):
        raise CheckpointError(f"{source}: its data.eval_transform is not a list")
    check_stored(rest, "data", source, (PROJECT,), lambda obj: obj is SegmentationDataModule)
    check_stored(data["source"], "data.source", source, (f"{PROJECT}data.",), _is_data_source)
    check_stored(eval_transform, "data.eval_transform", source, ("albumentations.",), _is_albumentations_transform)
    splits = {**data["source"], **({"download": False} if "download" in data["source"] else {})}
    config = {**rest, "source": splits, "train_transform": [], "eval_transform": eval_transform}
    with user_errors_unwrapped():
        return instantiate(OmegaConf.create(config))
