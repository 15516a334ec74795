"""What a checkpoint may hold: the schema of what train.py writes, checked before anything reads the file's state.

``check_state`` (called by ``checkpoint.read_checkpoint``, for train.py's resume, the best checkpoint it
validates, eval.py and predict.py) walks the whole file once and refuses it, naming the key, what it
holds and what was expected, unless:

- it is plain data: dicts (string or integer keys), lists and tuples of None, booleans, integers, floats,
  strings and tensors, nested at most ``MAX_DEPTH`` levels, no string holding a NUL byte (no set, bytes
  or other type, where a URL or a path could hide from the checks of ``checkpoint.confine_states``);
- every tensor is dense and its storage holds each of its elements: a view with a zero stride claims
  trillions of elements from a few bytes, which numpy would write out, zero after zero, for days;
- Lightning's entries are the containers it writes (the weights a dict of tensors; the loop, optimiser
  and schedule states dicts), and the project's own entries as train.py writes them (``ENTRIES``): the
  step and epoch counts, the training loss sum (finite) and its count, the data position (counts; its
  epoch the checkpoint's), the artifact probe's state (arrays of the shapes and type it writes for the
  stored network's classes, and a count), the metrics before training (numbers) and the scores of
  ModelCheckpoint's records (numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from unet_upsampling.errors import CheckpointError
from unet_upsampling.task import LOSS_MEAN_KEY

MAX_DEPTH = 32  # train.py writes at most 10 levels (a stored config's transforms, Lightning's loop counters)
PLAIN = (type(None), bool, int, float, str, torch.Tensor)
# The artifact probe's arrays (callbacks/artifact_probe.py): flat-field logit maps of metrics.flat_field_response
# (classes, 64, 64) and radial spectra of metrics.radial_power_spectrum (32 rings), before training and at the probe
# that ran last.
PROBE_ARRAYS = {"flat": lambda classes: (classes, 64, 64), "spectrum": lambda classes: (32,)}
PROBE_STAGES = ("init", "final")


def refused(source: str, where: str, value: Any, expected: str) -> CheckpointError:
    return CheckpointError(
        f"{source}: {where} holds {described(value)}, where train.py writes {expected}. Refused: the file was not "
        f"written by this project's train.py, or was altered."
    )


def described(value: Any) -> str:
    """A short account of ``value``: tensors by type and shape, containers by length, the rest as written."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return f"a {type(value).__name__} of {len(value)} entries"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:38]}...{text[-39:]}"


def at(where: str, key: Any) -> str:
    return f"{where}[{key!r}]" if where else str(key)


def check_state(checkpoint: Mapping[str, Any], source: str) -> None:
    """Refuses (CheckpointError) a checkpoint that holds anything train.py does not write; see the module."""
    check_plain(checkpoint, source)
    check_counts(checkpoint, source)
    check_containers(checkpoint, source)
    for key, check in ENTRIES.items():
        if key in checkpoint:
            check(checkpoint, source)


def check_plain(checkpoint: Mapping[str, Any], source: str) -> None:
    """Plain data, nested at most MAX_DEPTH levels, no NUL byte in a string, every tensor's elements stored."""
    pending = [(checkpoint, "", 0)]
    while pending:  # a loop, not recursion: the nesting is what is checked
        value, where, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise refused(source, where, value, f"at most {MAX_DEPTH} levels of nesting")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str | int) or isinstance(key, bool):
                    raise refused(source, f"{where} (a key)", key, "string or integer keys")
                pending += [(key, f"{at(where, key)} (a key)", depth + 1), (item, at(where, key), depth + 1)]
        elif isinstance(value, list | tuple):
            pending += [(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        elif not isinstance(value, PLAIN):
            raise refused(source, where, value, "plain data (dicts, lists, numbers, strings, tensors)")
        elif isinstance(value, str) and "\0" in value:
            raise refused(source, where, value, "strings without NUL bytes")
        elif isinstance(value, torch.Tensor) and (
            value.layout != torch.strided or value.numel() * value.element_size() > value.untyped_storage().nbytes()
        ):
            raise refused(
                source, where, value, "dense tensors whose storage holds every element (no view of fewer bytes)"
            )


def is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def is_number(value: Any) -> bool:
    """A real number: an int or float, or a one-element floating tensor (Lightning's scores)."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and value.is_floating_point()
    return isinstance(value, int | float) and not isinstance(value, bool)


def expect(ok: bool, source: str, where: str, value: Any, expected: str) -> None:
    if not ok:
        raise refused(source, where, value, expected)


def check_counts(checkpoint: Mapping[str, Any], source: str) -> None:
    for key in ("global_step", "epoch"):
        expect(is_count(checkpoint.get(key)), source, key, checkpoint.get(key), "a count (an integer, at least 0)")


def check_containers(checkpoint: Mapping[str, Any], source: str) -> None:
    """Lightning's entries as Lightning writes them: the weights a dict of tensors, the loop, optimiser and schedule
    states dicts (in lists, one per optimiser and schedule)."""
    for key, kind in (("loops", Mapping), ("optimizer_states", list), ("lr_schedulers", list)):
        if key in checkpoint:
            expect(isinstance(checkpoint[key], kind), source, key, checkpoint[key], f"a {kind.__name__}")
    for key in ("optimizer_states", "lr_schedulers"):
        for i, state in enumerate(checkpoint.get(key, [])):
            expect(isinstance(state, Mapping), source, f"{key}[{i}]", state, "a dict (a state_dict)")
    weights = checkpoint["state_dict"]
    expect(isinstance(weights, Mapping), source, "state_dict", weights, "a dict of tensors")
    for name, value in weights.items():
        expect(torch.is_tensor(value), source, at("state_dict", name), value, "a tensor")


def check_loss_mean(checkpoint: Mapping[str, Any], source: str) -> None:
    state = checkpoint[LOSS_MEAN_KEY]
    expect(isinstance(state, Mapping) and set(state) == {"sum", "steps"}, source, LOSS_MEAN_KEY, state, "sum, steps")
    total, steps = state["sum"], state["steps"]
    expect(
        is_number(total) and isinstance(total, torch.Tensor) and math.isfinite(total),
        source,
        at(LOSS_MEAN_KEY, "sum"),
        total,
        "a finite loss sum (a one-element float tensor)",
    )
    expect(
        isinstance(steps, torch.Tensor) and steps.dim() == 0 and not steps.is_floating_point() and steps >= 0,
        source,
        at(LOSS_MEAN_KEY, "steps"),
        steps,
        "a count of steps (a one-element integer tensor, at least 0)",
    )


def check_data_position(checkpoint: Mapping[str, Any], source: str) -> None:
    """The counts ``SegmentationDataModule.state_dict`` writes; the epoch of its train loader is the checkpoint's."""
    state, where = checkpoint["SegmentationDataModule"], "SegmentationDataModule"
    expect(isinstance(state, Mapping), source, where, state, "the data position (a dict of counts)")
    for key, value in state.items():
        known = key in ("train_epoch", "train_batches_taken", "train_passes_per_epoch")
        expect(
            known and is_count(value),
            source,
            at(where, key),
            value,
            "train_epoch, train_batches_taken, train_passes_per_epoch: counts",
        )
    if "train_epoch" in state:
        epoch = checkpoint.get("epoch")
        expect(
            state["train_epoch"] == epoch,
            source,
            at(where, "train_epoch"),
            state["train_epoch"],
            f"the checkpoint's epoch ({epoch})",
        )


def check_callbacks(checkpoint: Mapping[str, Any], source: str) -> None:
    states = checkpoint["callbacks"]
    expect(isinstance(states, Mapping), source, "callbacks", states, "a dict of callback states")
    for name, state in states.items():
        where = at("callbacks", name)
        expect(isinstance(state, Mapping), source, where, state, "a dict (a callback's state_dict)")
        if name == "ArtifactProbe":
            check_probe(state, source, where, stored_classes(checkpoint))
        elif name == "RunRecord":
            expect(set(state) == {"init_metrics"}, source, where, state, "init_metrics")
            metrics = state["init_metrics"]
            expect(isinstance(metrics, Mapping), source, at(where, "init_metrics"), metrics, "a dict of metrics")
            for key, value in metrics.items():
                expect(is_number(value), source, at(at(where, "init_metrics"), key), value, "a number")
        elif isinstance(name, str) and name.startswith("ModelCheckpoint"):
            check_scores(state, source, where)


def stored_classes(checkpoint: Mapping[str, Any]) -> int | None:
    """The stored network's number of classes (None if its config does not say: the arrays are then refused)."""
    config = checkpoint.get("unet_upsampling_config")
    model = config.get("model") if isinstance(config, Mapping) else None
    classes = model.get("num_classes") if isinstance(model, Mapping) else None
    return classes if is_count(classes) and classes > 0 else None


def check_probe(state: Any, source: str, where: str, classes: int | None) -> None:
    """The artifact probe's arrays, by name, shape and type as it writes them for ``classes``, and its count."""
    expect(set(state) == {"arrays", "fit_validations"}, source, where, state, "arrays, fit_validations")
    expect(
        is_count(state["fit_validations"]),
        source,
        at(where, "fit_validations"),
        state["fit_validations"],
        "a count of validations",
    )
    arrays = state["arrays"]
    expect(isinstance(arrays, Mapping), source, at(where, "arrays"), arrays, "a dict of arrays")
    names = [f"{stage}_{kind}" for stage in PROBE_STAGES for kind in PROBE_ARRAYS]
    for name, array in arrays.items():
        expect(name in names, source, at(at(where, "arrays"), name), array, f"arrays named {', '.join(names)}")
        shape = PROBE_ARRAYS[name.split("_", 1)[1]](classes)
        expect(
            classes is not None
            and isinstance(array, torch.Tensor)
            and array.dtype == torch.float32
            and tuple(array.shape) == shape,
            source,
            at(at(where, "arrays"), name),
            array,
            f"a float32 tensor of shape {list(shape)} (model.num_classes={classes})",
        )


def check_scores(state: Mapping[str, Any], source: str, where: str) -> None:
    """ModelCheckpoint's scores: numbers (None where it has none yet); its paths are ``confine_states``' concern."""
    for key in ("best_model_score", "current_score", "kth_value"):
        value = state.get(key)
        expect(value is None or is_number(value), source, at(where, key), value, "a score (a number) or None")
    best_k = state.get("best_k_models", {})
    expect(isinstance(best_k, Mapping), source, at(where, "best_k_models"), best_k, "a dict of paths and scores")
    for path, score in best_k.items():
        expect(is_number(score), source, at(at(where, "best_k_models"), path), score, "a score (a number)")


# The project's own entries of a checkpoint and their checks (run when the entry is there).
ENTRIES: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    LOSS_MEAN_KEY: check_loss_mean,
    "SegmentationDataModule": check_data_position,
    "callbacks": check_callbacks,
}
