"""The catalogue of headline measures and the answer to "which validation is this"."""

from __future__ import annotations

import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from unet_upsampling.measures import (
    ARTIFACT,
    COST,
    DETAILS,
    END,
    EVAL,
    FINAL,
    FIT,
    HPARAMS,
    INITIAL,
    KINDS,
    LOG,
    MEASURES,
    PROGRESS,
    REPORT,
    REVALIDATION,
    SUMMARY,
    across_keys,
    keys,
    line,
    measure_of,
    measured,
    report_keys,
    which_validation,
)
from unet_upsampling.results import summary_rows

from conftest import ROOT


def test_the_catalogue_is_a_leaf_the_report_can_import_without_training():
    code = (
        "import sys, unet_upsampling; before = set(sys.modules); import unet_upsampling.measures; "
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'lightning')) or m not in before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(ROOT / "src")}
    ).stdout
    assert out.strip() == "['unet_upsampling.measures']"


def test_every_screen_reads_the_catalogue():
    """One entry decides where a measure is shown: progress line, train.log, summary rows and hparams."""
    names = [m.name for m in MEASURES]
    assert len(names) == len(set(names))
    values = {"val/dice": 0.5, "val/flat_std": 0.012345, "val/loss": 0.9, "val/iou": 0.3}
    assert line(PROGRESS, values) == "dice 0.5, flat_std 0.01235"  # loss and IoU are not on the progress line
    assert line(LOG, values) == "dice 0.5, flat_std 0.01235, loss 0.9"
    _, rows = summary_rows({**values, "test/dice": 0.6, "val/dice_c0": 0.4}, class_names=["cell"])
    assert [row[0] for row in rows] == ["dice", "dice cell", "iou", "flat_std", "loss"]
    assert keys(HPARAMS, ("val", "test"))[:2] == ("val/dice", "val/iou") and keys(HPARAMS)[-1] == "train_time_s"
    assert all(not k.startswith("test/") for k in keys(SUMMARY))


def trainer(fn: str, global_step: int = 0, ckpt_path: str | None = None, steps: int = 100) -> SimpleNamespace:
    return SimpleNamespace(
        state=SimpleNamespace(fn=fn), global_step=global_step, ckpt_path=ckpt_path, estimated_stepping_batches=steps
    )


@pytest.mark.parametrize(
    "trainer_, checkpoint_step, expected",
    [
        (trainer("validate"), None, (INITIAL, 0, "validation before training")),
        (trainer("fit", 30), None, (FIT, 30, "validation")),
        (trainer("fit", 30), 20, (FIT, 30, "validation")),  # resumed from step 20, now at 30
        (trainer("fit", 100), None, (FINAL, 100, "final validation")),  # after the run's last step
        (trainer("fit", 100, steps=float("inf")), None, (FIT, 100, "validation")),  # no step or epoch limit
        (
            trainer("validate", 90, "run/checkpoints/step_000060.ckpt"),
            60,
            (REVALIDATION, 60, "validation of the best checkpoint"),
        ),
        (
            trainer("test", 90, "run/checkpoints/step_000060.ckpt"),
            60,
            (REVALIDATION, 60, "validation of the best checkpoint"),
        ),
        (trainer("validate", 90), None, (END, 90, "validation of the final weights")),  # checkpointing off
        (trainer("validate"), 60, (EVAL, 60, "evaluation of the checkpoint")),  # eval.py: load_checkpoint's weights
    ],
)
def test_which_validation(trainer_, checkpoint_step, expected):
    module = SimpleNamespace() if checkpoint_step is None else SimpleNamespace(checkpoint_step=checkpoint_step)
    validation = which_validation(trainer_, module)
    assert (validation.kind, validation.step, validation.label) == expected


def test_measured_values_leave_out_keys_an_earlier_validation_logged():
    """The trainer keeps the probe's flat_std of an earlier validation; this one logged dice alone (with the value
    the earlier one had: measured all the same)."""
    trainer = SimpleNamespace(callback_metrics={"val/dice": torch.tensor(0.5), "val/flat_std": torch.tensor(0.07)})
    assert measured(trainer, SimpleNamespace(validation_keys={"val/dice", "step"})) == {"val/dice": 0.5}


def test_the_report_and_the_summary_take_their_columns_from_the_catalogue():
    """The report's tables hold each measure shown in the report at each of its splits, once; the summary's columns
    are the measures marked ``across``, its median-and-range columns their artifact measures."""
    from unet_upsampling.report import across, tables

    reported = [m for m in MEASURES if REPORT in m.shown]
    expected = {m.key(s) for m in reported for s in m.splits} | {m.key() for m in reported if not m.per_split}
    columns = [key for _, keys in tables.TABLES for key in keys]
    assert sorted(columns) == sorted(expected) and len(columns) == len(set(columns))
    assert sum(map(len, (report_keys(kind) for kind in KINDS))) == len(columns)
    assert across_keys() == across.COLUMNS and across.COLUMNS[0] == "val/dice"
    assert tuple(k for k in across.COLUMNS if measure_of(k).kind == ARTIFACT) == across.SPREAD
    assert {"val/flat_std", "val/shift1_disagree_pm"} <= set(across.SPREAD) and "params" not in across.SPREAD


def test_every_key_names_its_measure():
    for measure in MEASURES:
        for split in measure.splits:
            assert measure_of(measure.key(split)) is measure
    assert measure_of("val/dice_c0") is None and measure_of("val/params") is None and measure_of("dice") is None
    assert report_keys(ARTIFACT, ("init",))[:3] == ("init/pef2", "init/flat_pef2", "init/flat_std")
    assert report_keys(COST) == ("params", "trainable_params", "train_time_s", "eval_time_s")


def is_headline_or_detail(key: str) -> bool:
    """A metrics.json key is a catalogue measure at one of its splits, or one of the details it names."""
    measure = measure_of(key)
    if measure is not None and (not measure.per_split or key.split("/")[0] in measure.splits):
        return True
    return any(re.fullmatch(pattern, key) for pattern in DETAILS)


def test_a_key_outside_the_catalogue_is_caught():
    assert is_headline_or_detail("val/flat_std_grey25") and is_headline_or_detail("test/dice_c3")
    assert not is_headline_or_detail("val/new_measure") and not is_headline_or_detail("test/flat_std")
