"""The headline measures: one catalogue of their keys, labels, formats and where each is shown; which
validation measured them, and what one validation measured.

The progress lines, train.log, the console summary, the loggers' hparams and the report read the
catalogue: the report's tables are ``report_keys(kind)``, the cross-dataset summary's columns ``across_keys()``.
A new measure is one line in ``MEASURES``. A leaf module: it imports nothing of the project
(nor torch or Lightning; the trainer and module are read by their public attributes), so the report can
read it without pulling in training.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where a measure is shown.
PROGRESS = "progress"  # the plain progress line of each validation
LOG = "log"  # train.log's line of each validation
SUMMARY = "summary"  # the table at the end of a run (console and train.log)
HPARAMS = "hparams"  # the run's final metrics beside its settings (TensorBoard's HParams tab)
REPORT = "report"  # the study report's tables
SCREENS = frozenset({PROGRESS, LOG, SUMMARY, HPARAMS, REPORT})

# What a measure is about: each is one table of the study report.
QUALITY = "quality"  # segmentation quality (mean [95% interval] over seeds)
ARTIFACT = "artifact"  # periodic patterns (median [min, max] over seeds: skewed across seeds)
COST = "cost"  # size and time
KINDS = (QUALITY, ARTIFACT, COST)

REPORTED = frozenset({REPORT})  # measures of metrics.json shown in the report alone


@dataclass(frozen=True)
class Measure:
    """``name`` is the key after the split (``val/<name>``, ``test/<name>``, ``init/<name>``), or the whole key
    of a per-run number (``per_split=False``); ``fmt`` a format spec for ``format``; ``kind`` its report table;
    ``splits`` those of metrics.json the report shows it for (``init`` the untrained network, ``val`` the best
    checkpoint, ``test`` the held-out split); ``across``: a column of the cross-dataset summary (at ``val``)."""

    name: str
    label: str
    shown: frozenset[str]
    fmt: str = ".4g"
    per_split: bool = True
    kind: str = QUALITY
    splits: tuple[str, ...] = ("val",)
    across: bool = False

    def key(self, split: str = "val") -> str:
        return f"{split}/{self.name}" if self.per_split else self.name

    def format(self, value: float) -> str:
        return format(value, self.fmt)


SPLITS = ("init", "val", "test")
PROBED = ("init", "val")  # the flat-field probes feed the network no image: at init and the best checkpoint only
SCORED = ("val", "test")
GREY_MEASURE = re.compile(r"flat_(std|pef)_grey(\d+)")  # one pair per grey level a run's probe measured


def grey_measure(name: str) -> Measure | None:
    """The flat-field measure of one grey level (``flat_std_grey25``: G = 25 % of the pixel range), whatever levels
    a run's ``callbacks.artifact_probe.grey_levels`` held."""
    match = GREY_MEASURE.fullmatch(name)
    if match is None:
        return None
    stat, grey = match.groups()
    label = f"flat-field {stat.upper() if stat == 'pef' else stat} at grey {grey} %"
    return Measure(name, label, REPORTED, kind=ARTIFACT, splits=PROBED)


def shipped_grey_levels() -> tuple[int, ...]:
    """The probe's default grey levels (configs/callbacks/default.yaml), in per cent: the report's columns of a
    study that kept them; other levels a run measured join as it holds them (``grey_keys``)."""
    import yaml  # omegaconf's own dependency: the catalogue stays free of the project's and of torch

    config = yaml.safe_load((Path(__file__).parent / "configs" / "callbacks" / "default.yaml").read_text())
    return tuple(round(100 * g) for g in config["artifact_probe"]["grey_levels"])


def grey_keys(keys: Iterable[str], splits: tuple[str, ...] = PROBED) -> list[str]:
    """The grey-level measures among ``keys`` (a study's metrics) at ``splits``, in order of level."""
    found = {k for k in keys if k.partition("/")[0] in splits and grey_measure(k.partition("/")[2])}
    return sorted(found, key=lambda k: (k.partition("/")[0], int(GREY_MEASURE.fullmatch(k.partition("/")[2])[2]), k))


MEASURES: tuple[Measure, ...] = (
    Measure("dice", "Dice", SCREENS, splits=SCORED, across=True),
    Measure("iou", "IoU", frozenset({SUMMARY, HPARAMS, REPORT}), splits=SCORED),
    Measure("boundary_f1", "boundary F1", SCREENS, splits=SCORED, across=True),
    Measure("pef2", "logit PEF2", SCREENS, kind=ARTIFACT, splits=SPLITS, across=True),
    Measure("flat_pef2", "flat-field PEF2", REPORTED, kind=ARTIFACT, splits=PROBED),
    Measure("flat_std", "flat-field std", SCREENS, kind=ARTIFACT, splits=PROBED, across=True),
    *(grey_measure(f"flat_{stat}_grey{g}") for g in shipped_grey_levels() for stat in ("std", "pef")),
    Measure("noise_pef2", "noisy flat-field PEF2", REPORTED, kind=ARTIFACT, splits=PROBED),
    Measure(
        "kernel_imbalance", "kernel imbalance", frozenset({SUMMARY, HPARAMS, REPORT}), kind=ARTIFACT, splits=PROBED
    ),
    # What a user sees of the pattern (docs/modes.md): the pattern tile by tile in the logits, in the class
    # probabilities, wrong labels that concentrate on output phases, labels that change when the image moves by 1 or
    # 2 px.
    Measure("lpef2", "logit local PEF2", SCREENS, kind=ARTIFACT, splits=SPLITS, across=True),
    Measure("prob_pef2", "probability PEF2", frozenset({LOG, SUMMARY, HPARAMS, REPORT}), kind=ARTIFACT, splits=SCORED),
    Measure(
        "phase_excess2_pm",
        "phase excess of wrong labels, period 2 (per mille)",
        frozenset({LOG, SUMMARY, HPARAMS, REPORT}),
        kind=ARTIFACT,
        splits=SCORED,
        across=True,
    ),
    Measure(
        "phase_excess4_pm",
        "phase excess of wrong labels, period 4 (per mille)",
        REPORTED,
        kind=ARTIFACT,
        splits=SCORED,
    ),
    Measure(
        "shift1_disagree_pm",
        "1 px shift disagreement (per mille)",
        frozenset({LOG, SUMMARY, HPARAMS, REPORT}),
        kind=ARTIFACT,
        splits=SCORED,
        across=True,
    ),
    Measure("shift2_disagree_pm", "2 px shift disagreement (per mille)", REPORTED, kind=ARTIFACT, splits=SCORED),
    Measure("loss", "loss", frozenset({LOG, SUMMARY})),
    Measure("params", "parameters", REPORTED, fmt=",d", per_split=False, kind=COST, across=True),
    Measure("trainable_params", "trainable parameters", REPORTED, fmt=",d", per_split=False, kind=COST),
    Measure(
        "train_time_s",
        "training time (s)",
        frozenset({HPARAMS, REPORT}),
        fmt=".0f",
        per_split=False,
        kind=COST,
        across=True,
    ),
    Measure("eval_time_s", "evaluation time (s)", REPORTED, fmt=".0f", per_split=False, kind=COST),
)

# Keys of metrics.json that are not headline measures: the report shows per-class values in its Dice per class
# tables, the other periods of each PEF in periodic_energy.png and tests the rates of false labels per phase across
# seeds; quality and the label measures at init are not compared (the untrained network's labels); the rest is
# bookkeeping (the loss, the last epoch and step, the measured weights, the best checkpoint, whether the block maps a
# constant to a constant at init, each phase's time, the commit, CPU and date of the run).
DETAILS = (
    r"(init|val|test)/(dice|iou)_c\d+",
    r"(init|val|test)/(flat_|noise_|prob_|l)?pef\d+",
    r"(init|val|test)/phase_fp_c\d+_\d\d_pm",
    r"init/(dice|iou|boundary_f1)",
    r"(init|val|test)/loss",
    r"init/(prob_pef2|phase_excess\d_pm|shift\d+_disagree_pm)",
    r"time/\w+_s",
    r"(epoch|global_step|step|best_checkpoint|upsample_flat_at_init|eval_weights|precision)",
    r"(git_commit|cpu|finished)",
)


def shown_in(where: str) -> tuple[Measure, ...]:
    """The measures shown ``where`` (PROGRESS, LOG, ...), in catalogue order."""
    return tuple(m for m in MEASURES if where in m.shown)


def keys(where: str, splits: tuple[str, ...] = ("val",)) -> tuple[str, ...]:
    """The metric keys shown ``where``: each per-split measure once per split, then the per-run ones."""
    split_keys = [m.key(s) for s in splits for m in shown_in(where) if m.per_split]
    return (*split_keys, *(m.key() for m in shown_in(where) if not m.per_split))


def report_keys(kind: str, splits: tuple[str, ...] = SPLITS) -> tuple[str, ...]:
    """The report's columns of one kind: split by split (of ``splits``), each measure of the kind at that split in
    catalogue order, then the per-run measures."""
    measures = [m for m in shown_in(REPORT) if m.kind == kind]
    split_keys = [m.key(s) for s in splits for m in measures if m.per_split and s in m.splits]
    return (*split_keys, *(m.key() for m in measures if not m.per_split))


def across_keys() -> tuple[str, ...]:
    """The cross-dataset summary's columns: the measures marked ``across``, at ``val`` (or per run)."""
    return tuple(m.key("val") for m in shown_in(REPORT) if m.across)


def measure_of(key: str) -> Measure | None:
    """The catalogue's measure behind a metric key (``val/flat_std``, ``params``, a grey level's), None for any
    other key."""
    split, _, name = key.rpartition("/")
    found = next((m for m in MEASURES if m.name == name and m.per_split == bool(split)), None)
    return found or (grey_measure(name) if split else None)


def line(where: str, values: dict[str, float], split: str = "val") -> str:
    """``name value, ...`` of the measures shown ``where`` that ``values`` holds (keys ``<split>/<name>``)."""
    shown = [m for m in shown_in(where) if m.per_split and m.key(split) in values]
    return ", ".join(f"{m.name} {m.format(values[m.key(split)])}" for m in shown)


INITIAL = "initial"  # train.py's validation of the untrained network
FIT = "fit"  # a validation while fitting
FINAL = "final"  # the validation while fitting after the run's last step: the final weights
END = "end"  # train.py's validation after fitting of the final weights, when fitting did not validate them
REVALIDATION = "revalidation"  # train.py's validation after fitting of a checkpoint fitting validated (the best)
EVAL = "eval"  # eval.py's: weights read from a checkpoint file
MEASURED = (FINAL, END, REVALIDATION, EVAL)  # the validations of a run's measured weights: figures, probes


@dataclass(frozen=True)
class Validation:
    """``kind`` (INITIAL, FIT, FINAL, END, REVALIDATION, EVAL), ``step``: the optimiser steps behind the weights
    validated, ``label``: how a line names it."""

    kind: str
    step: int
    label: str


def which_validation(trainer: Any, module: Any) -> Validation:
    """What the trainer is validating now.

    While fitting, the trainer's weights at ``trainer.global_step``: the final ones once it reaches the run's
    planned steps (``trainer.estimated_stepping_batches``). A validation does not restore the trainer's step:
    weights restored by Lightning (``ckpt_path=``) or read by ``load_checkpoint`` carry theirs in the module's
    ``checkpoint_step``. After steps of this trainer it is train.py's validation at the end; before any, an
    evaluation of a checkpoint (eval.py) or of the untrained network.
    """
    if trainer.state.fn == "fit":
        if trainer.global_step >= trainer.estimated_stepping_batches:
            return Validation(FINAL, trainer.global_step, "final validation")
        return Validation(FIT, trainer.global_step, "validation")
    step = getattr(module, "checkpoint_step", None)
    if trainer.global_step > 0:
        if trainer.ckpt_path and step is not None:
            return Validation(REVALIDATION, step, "validation of the best checkpoint")
        return Validation(END, trainer.global_step, "validation of the final weights")
    if step is not None:
        return Validation(EVAL, step, "evaluation of the checkpoint")
    return Validation(INITIAL, 0, "validation before training")


def measured(trainer: Any, module: Any) -> dict[str, float]:
    """The values the latest validation logged, by key, read at its end.

    ``trainer.callback_metrics`` keeps every key ever logged: after a validation without the artifact
    probe it still holds the probe's last values. The task notes the keys logged since a validation began
    (``SegmentationTask.validation_keys``, the probe's among them: it logs through the task).
    """
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k in module.validation_keys}
