"""The checkpoint trust boundary for stored configs: what a config read from a checkpoint may name.

A stored config (inside a checkpoint) is data from a file that may come from anyone: it may name
only a network, an upsample block and the task (``stored_classes``), albumentations transforms that
read no files for the evaluation pipeline, and for eval.py the project's DataModule and split
factories; anything else is refused before any import or call. What passes is built by ``builders.py``.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from unet_upsampling import models
from unet_upsampling.builders import build_datamodule, build_eval_transform, build_task
from unet_upsampling.data.datamodule import SegmentationDataModule
from unet_upsampling.errors import CheckpointError
from unet_upsampling.losses import shipped_targets, stored_loss
from unet_upsampling.models import upsample
from unet_upsampling.task import SegmentationTask


def _spellings(cls: type) -> set[str]:
    """The dotted names that reach ``cls``: its module's, and each parent package's that re-exports it
    (``unet_upsampling.models.UNet`` as well as ``unet_upsampling.models.unet.UNet``)."""
    parts = cls.__module__.split(".")
    packages = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {
        f"{name}.{cls.__qualname__}" for name in packages if getattr(sys.modules[name], cls.__qualname__, None) is cls
    }


def _upsample_blocks() -> list[type]:
    """Every upsample block: the modules defined in ``models/upsample.py`` (one class per mode, and their bases)."""
    return [
        obj
        for obj in vars(upsample).values()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == upsample.__name__
    ]


FILE_PARAMETERS = {"reference_images", "read_fn", "font_path"}


def _eval_transforms() -> set[str]:
    """albumentations' transforms and composes, except those that read files (reference images, fonts)."""
    import albumentations as A

    return {
        name
        for obj in vars(A).values()
        if inspect.isclass(obj)
        and issubclass(obj, A.BasicTransform | A.BaseCompose)
        and not FILE_PARAMETERS & inspect.signature(obj).parameters.keys()
        for name in _spellings(obj)
    }


@functools.cache
def stored_classes() -> dict[str, set[str]]:
    """Where a stored model or task config may name a class, and which: a network, its decoder's upsample block,
    the task. Matched as strings, so anything else is refused before it is imported. Built on first use: the
    encoder UNet's module imports timm, which a run's start-up leaves out."""
    return {
        "model": {spelling for name in models.__all__ for spelling in _spellings(getattr(models, name))},
        "model.upsample": {name for cls in _upsample_blocks() for name in _spellings(cls)},
        "task": _spellings(SegmentationTask),
        "task.loss": shipped_targets(),
        "task.loss.losses[]": shipped_targets(),
    }


# Hydra keys that change only how an admitted class is called (as a partial, with dicts instead of DictConfigs,
# nested nodes left unbuilt), never which code runs, and what Hydra takes for each (``_target_``: checked against
# stored_classes()). Every other ``_name_`` key is refused: ``_args_`` passes positional arguments past the keyword
# checks (``pretrained`` among them).
HYDRA_KEYS = {
    "_target_": "a class name",
    "_partial_": "true or false",
    "_convert_": "none, partial, object or all",
    "_recursive_": "true or false",
}


def takes(name: str, value: Any) -> bool:
    """Whether Hydra takes ``value`` for its key ``name`` (``_target_`` aside)."""
    if name == "_convert_":
        return isinstance(value, str) and value.lower() in ("none", "partial", "object", "all")
    return name == "_target_" or isinstance(value, bool)


def check_stored_task(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored config's model and task, checked (``check_stored``) and made fit for inference: no optimiser or
    schedule, a loss only if it is a shipped one (``losses.stored_loss``), no ``pretrained`` (the weights come
    from the checkpoint; a rebuilt model never downloads) and no ``compile`` (a rebuilt model builds no kernels)."""
    if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
        raise CheckpointError(f"{source}: its config has no model entry")
    model = {k: v for k, v in config["model"].items() if k not in ("pretrained", "compile", "compile_mode")}
    task = {k: v for k, v in (config.get("task") or {}).items() if k not in ("optimizer", "scheduler", "loss")}
    loss = stored_loss((config.get("task") or {}).get("loss"), task.get("ignore_index", -100))
    task.update({"loss": loss} if loss is not None else {})
    check_stored(model, "model", source, stored_classes())
    check_stored(task, "task", source, stored_classes())
    return model, task


def check_stored(node: Any, key: str, source: str, classes: Mapping[str, set[str]]) -> None:
    """Refuses (CheckpointError naming ``source`` and the key) a stored config that names anything but ``classes``.

    A ``_target_`` is admitted only at a key of ``classes`` (``[]`` standing for any list index) and only if
    it is one of that key's names, compared as a string before anything is imported; ``_args_`` and other
    Hydra keys outside ``HYDRA_KEYS`` are refused, and so are interpolations (``${...}``), as stored
    configs are resolved when written.
    """
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and (
            not isinstance(target, str) or target not in classes.get(re.sub(r"\[\d+\]", "[]", key), ())
        ):
            raise CheckpointError(
                f"{source}: {key}._target_={target!r} is not one of the classes a checkpoint may rebuild "
                f"(model: UNet or EncoderUNet; model.upsample: a block of unet_upsampling.models.upsample; task: "
                f"SegmentationTask; data: the project's DataModule and split factories; data.eval_transform: "
                f"albumentations transforms that read no files). Refused without importing or running it: the file "
                f"was not written by this project's train.py, or was altered."
            )
        for name, value in node.items():
            if isinstance(name, str) and name.startswith("_") and name.endswith("_") and name not in HYDRA_KEYS:
                raise CheckpointError(
                    f"{source}: {key}.{name} is refused: a stored config may use only {', '.join(sorted(HYDRA_KEYS))} "
                    f"of Hydra's keys. The file was not written by this project's train.py, or was altered."
                )
            if name in HYDRA_KEYS and not takes(name, value):
                raise CheckpointError(
                    f"{source}: {key}.{name}={value!r} is refused: Hydra takes {HYDRA_KEYS[name]} there. The file "
                    f"was not written by this project's train.py, or was altered."
                )
            check_stored(value, f"{key}.{name}", source, classes)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            check_stored(value, f"{key}[{i}]", source, classes)
    elif isinstance(node, str) and "${" in node:
        raise CheckpointError(f"{source}: {key}={node!r} is an interpolation; stored configs are resolved. Refused.")


def rebuild_task(config: Mapping[str, Any], source: str) -> SegmentationTask:
    """The task a stored config describes, for inference: network and metrics, no optimiser or schedule."""
    model, task = check_stored_task(config, source)
    return build_task({"model": model, "task": task})


def rebuild_eval_transform(config: Mapping[str, Any], source: str) -> Callable:
    """The evaluation pipeline a stored config describes: its resize (data.scale), albumentations transforms, then
    its normalisation."""
    data = config.get("data") or {}
    if not isinstance(data.get("eval_transform"), list) or not isinstance(data.get("normalize"), Mapping):
        raise CheckpointError(f"{source}: its config has no data.eval_transform list and data.normalize")
    check_stored(data["eval_transform"], "data.eval_transform", source, {"data.eval_transform[]": _eval_transforms()})
    normalize = {k: data["normalize"][k] for k in ("mean", "std")}
    check_stored(normalize, "data.normalize", source, {})
    return build_eval_transform(data["eval_transform"], normalize, stored_scale(config, source))


def stored_scale(config: Mapping[str, Any], source: str) -> float:
    """The factor the stored run resized its images by (data.scale; 1 for checkpoints from before it)."""
    scale = (config.get("data") or {}).get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not (math.isfinite(scale) and scale > 0):
        raise CheckpointError(
            f"{source}: its data.scale={scale!r} is not a positive number, the factor images are "
            f"resized by. Refused: the file was not written by this project's train.py, or was "
            f"altered."
        )
    return scale


def _stored_data_classes() -> dict[str, set[str]]:
    """Where a stored ``data`` config may name a class, and which: the project's DataModule, its split factories
    (the only callables ``data.source`` may name) and albumentations transforms for the evaluation pipeline."""
    from unet_upsampling.data.folder import folder_splits
    from unet_upsampling.data.synthetic import synthetic_splits
    from unet_upsampling.data.torchvision_sets import oxford_pet_splits, voc_splits

    factories = (synthetic_splits, folder_splits, oxford_pet_splits, voc_splits)
    return {
        "data": _spellings(SegmentationDataModule),
        "data.source": {name for factory in factories for name in _spellings(factory)},
        "data.eval_transform[]": _eval_transforms(),
    }


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
    check_stored(
        {**rest, "source": data["source"], "eval_transform": eval_transform}, "data", source, _stored_data_classes()
    )
    splits = {**data["source"], **({"download": False} if "download" in data["source"] else {})}
    config = {**rest, "source": splits, "train_transform": [], "eval_transform": eval_transform}
    return build_datamodule(OmegaConf.create({"data": config}))
