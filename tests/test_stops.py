"""SIGTERM and SIGINT stop train.py, eval.py and predict.py in every phase: exit 143 or 130, one line naming the phase
and how to go on, no lock or staging folder left behind. (train.py's phases from the validation before training on,
and its resume: test_faults.py and test_resume.py.)"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from PIL import Image

from unet_upsampling import evaluate, predict, train
from unet_upsampling.runlock import RunDirLock

from conftest import ROOT, TINY, run_app

CODES = {"SIGTERM": 143, "SIGINT": 130}


@pytest.fixture(autouse=True)
def signals_fail_the_test():
    """While a test runs, a signal that reaches no handler of the code under test fails it (instead of ending the
    test run, as SIGTERM's default would)."""

    def unhandled(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached no handler of the entry point")

    previous = {signum: signal.signal(signum, unhandled) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def sending(name: str, function):
    """``function`` that first sends signal ``name`` to this process."""

    def sends(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, name))
        return function(*args, **kwargs)

    return sends


STARTING = "starting (checking the config, reading the checkpoint to resume from)"


@pytest.mark.parametrize("name, where", [("SIGTERM", "hydra"), ("SIGINT", "config")])
def test_train_stops_on_a_signal_before_its_first_step(name, where, tmp_path, monkeypatch, capsys):
    """While Hydra starts (the run directory's lock taken, .hydra/ being written) or the config is checked."""
    if where == "hydra":
        monkeypatch.setattr(RunDirLock, "on_run_start", sending(name, RunDirLock.on_run_start))
    else:
        monkeypatch.setattr(train, "check_config", sending(name, train.check_config))
    code = run_app("train.py", *TINY, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == CODES[name] and "Traceback" not in err
    assert f"stopped by {name} during {STARTING}; no checkpoint was written yet: run the same command again\n" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "train.log"]  # no lock left, nothing trained


def test_train_stops_on_a_signal_while_it_reads_the_checkpoint_to_resume(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "resume_from", sending("SIGTERM", train.resume_from))
    args = [*TINY, "trainer.max_epochs=2", "test=false", f"ckpt_path={checkpoint}", f"hydra.run.dir={tmp_path}"]
    assert run_app("train.py", *args, cwd=tmp_path, monkeypatch=monkeypatch) == 143
    assert f"stopped by SIGTERM during {STARTING}; no checkpoint was written yet" in capsys.readouterr().err
    assert not (tmp_path / "train.lock").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("name, at", [("SIGINT", "reading"), ("SIGTERM", "validation"), ("SIGINT", "validation")])
def test_eval_stops_on_a_signal_without_metrics_or_lock(name, at, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    if at == "reading":
        monkeypatch.setattr(evaluate, "load_checkpoint", sending(name, evaluate.load_checkpoint))
    send = ["+callbacks.signal._target_=fault_injection.SendSignal", f"+callbacks.signal.signal={name}"]
    args = [f"ckpt_path={checkpoint}", *send, "+callbacks.signal.at=init", f"hydra.run.dir={tmp_path / 'eval'}"]
    assert run_app("eval.py", *args, cwd=tmp_path, monkeypatch=monkeypatch) == CODES[name]
    err = capsys.readouterr().err
    phase = {"reading": f"reading {checkpoint}", "validation": f"the validation of {checkpoint}"}[at]
    assert f"stopped by {name} during {phase}; metrics.json was not written: run the same command again\n" in err
    assert "Traceback" not in err
    assert not (tmp_path / "eval" / "metrics.json").exists() and not (tmp_path / "eval" / "train.lock").exists()


@pytest.mark.parametrize("name, at", [("SIGINT", "reading"), ("SIGTERM", "predicting")])
def test_predict_stops_on_a_signal_leaving_no_output_and_no_staging(
    name, at, checkpoint, tmp_path, monkeypatch, capsys
):
    (tmp_path / "in").mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.full((40, 40), 128, np.uint8)).save(tmp_path / "in" / f"{stem}.png")
    if at == "reading":
        monkeypatch.setattr(predict, "load_checkpoint", sending(name, predict.load_checkpoint))
    else:
        monkeypatch.setattr(predict, "sliding_window", sending(name, predict.sliding_window))
    args = [f"ckpt_path={checkpoint}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"]
    assert run_app("predict.py", *args, cwd=tmp_path, monkeypatch=monkeypatch) == CODES[name]
    err = capsys.readouterr().err
    phase = {"reading": "checking the inputs and reading the checkpoint", "predicting": "predicting a.png (image 1"}
    assert f"stopped by {name} during {phase[at]}" in err and "Traceback" not in err
    assert f"nothing was written to output={tmp_path / 'out'}: run the same command again\n" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no hidden staging folder


def test_a_signal_after_the_run_while_hydra_closes_is_dropped(tmp_path, monkeypatch, capsys):
    """The run is complete (metrics.json written): it exits 0."""
    monkeypatch.setattr(RunDirLock, "on_run_end", sending("SIGTERM", RunDirLock.on_run_end))
    args = [*TINY, "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}"]
    assert run_app("train.py", *args, cwd=tmp_path, monkeypatch=monkeypatch) == 0
    assert (tmp_path / "metrics.json").is_file()
