"""A stopped run resumes with nothing lost: kill -9, SIGTERM, a SLURM requeue, a longer schedule, a bad checkpoint."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, read_metrics, reproducible, run_app

pytestmark = pytest.mark.slow  # every test here trains, stops and resumes whole runs

BASE = [*TINY, "data.source.train=16", "seed=3"]
# 4 steps an epoch and a validation, so a last.ckpt, every 2 steps: those of steps 2, 6 and 10 are mid-epoch.
ARGS = [*BASE, "trainer.max_steps=12", "validations=6"]


def start(run_dir: Path, *extra: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    """train.py in a subprocess of its own: the process boundary is the point of these tests. Python's own
    buffering, as a user's shell has it (no PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *ARGS, *extra, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **env,
            "LOG_DIR": str(run_dir.parent / "logs"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        },
    )


def wait_for_file(path: Path, process: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"no {path} (process exit: {process.poll()})"


def wait_for_checkpoint(run_dir: Path, step: int, process: subprocess.Popen) -> int:
    """Until last.ckpt holds ``step`` or a later one (written through a temporary file and a rename: always
    whole); returns its step."""
    deadline = time.time() + 300
    last = run_dir / "checkpoints" / "last.ckpt"
    while time.time() < deadline and process.poll() is None:
        if last.is_file() and (saved := torch.load(last, weights_only=True)["global_step"]) >= step:
            return saved
        time.sleep(0.05)
    raise AssertionError(f"no last.ckpt of step {step} in {run_dir} (process exit: {process.poll()})")


def csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "csv" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def assert_same_outputs(resumed: Path, whole: Path) -> None:
    """metrics.json (but times and paths), every CSV row and artifacts.npz as the uninterrupted run's."""
    metrics = [read_metrics(d) for d in (resumed, whole)]
    assert reproducible(metrics[0]) == reproducible(metrics[1])
    assert any(k.startswith("init/") for k in metrics[0])  # the validation before training, kept by the checkpoint
    assert csv_rows(resumed) == csv_rows(whole)  # logs included
    arrays = [dict(np.load(d / "artifacts.npz")) for d in (resumed, whole)]
    assert arrays[0].keys() == arrays[1].keys() >= {"init_flat", "final_flat"}
    for key in arrays[0]:
        np.testing.assert_array_equal(arrays[0][key], arrays[1][key])


def assert_resumed_at(run_dir: Path, step: int) -> None:
    """train.log says the run resumed from last.ckpt at ``step``, and training started there (not at step 0)."""
    line = f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'} at step {step}"
    log = (run_dir / "train.log").read_text()
    assert line in log
    resumed = log[log.rindex(line) :]  # train.log gathers every run in the directory: the resumed run's part
    assert f"training from step {step} (" in resumed and "training from step 0" not in resumed


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_app("train.py", *ARGS, f"hydra.run.dir={run_dir}", cwd=run_dir.parent, monkeypatch=monkeypatch) == 0
    return run_dir


def test_a_killed_run_refuses_a_second_run_then_resumes_and_writes_what_the_uninterrupted_run_writes(
    uninterrupted, tmp_path, monkeypatch, capsys
):
    """While a run is alive, its progress lines reach the file its stdout is redirected to (as under SLURM or
    nohup) and a second run in its directory is refused before it writes there (train.lock); kill -9 after the
    step-2 checkpoint, mid-epoch; the resume takes over the dead run's lock with a warning, continues from step 2,
    writes what the uninterrupted run writes and leaves no lock behind."""
    killed, go, job_out = tmp_path / "killed", tmp_path / "go", tmp_path / "job.out"
    pause = ["+callbacks.wait._target_=fault_injection.WaitFor", f"+callbacks.wait.path={go}", "+callbacks.wait.step=2"]
    with job_out.open("w") as out:
        process = start(killed, *pause, "callbacks.progress_bar.every_s=0", stdout=out)
    wait_for_file(Path(f"{go}.ready"), process)
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    lines = job_out.read_text().splitlines()  # the run is paused before step 3: what it printed has arrived
    steps = [" ".join(line.split()[:4]) for line in lines if line.startswith("epoch ")]
    assert steps == ["epoch 0 step 1/12", "epoch 0 step 2/12"]  # a line a step at every_s=0
    assert "validation at step 2: dice " in "\n".join(lines) and "\x1b" not in job_out.read_text()
    overrides, log = (killed / ".hydra" / "overrides.yaml").read_text(), (killed / "train.log").read_text()

    assert run_app("train.py", *ARGS, "seed=5", f"hydra.run.dir={killed}", cwd=tmp_path, monkeypatch=monkeypatch) == 1
    err = capsys.readouterr().err
    assert f"{killed} is in use by another run (pid {process.pid} on {socket.gethostname()}, started " in err
    assert f"its lock is {killed / 'train.lock'}). Wait for that run to end" in err and "Traceback" not in err
    assert (killed / ".hydra" / "overrides.yaml").read_text() == overrides  # the refused run wrote nothing there
    assert (killed / "train.log").read_text() == log

    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "train.lock").exists()  # as a kill -9 leaves it
    assert (
        run_app("train.py", *ARGS, "ckpt_path=last", f"hydra.run.dir={killed}", cwd=tmp_path, monkeypatch=monkeypatch)
        == 0
    )
    taken_over = f"taking over the lock of a run that is no longer running (pid {process.pid} on"
    assert taken_over in (killed / "train.log").read_text()
    assert_resumed_at(killed, 2)
    assert_same_outputs(killed, uninterrupted)
    assert not (killed / "train.lock").exists()


def test_ctrl_c_after_a_mid_epoch_checkpoint_then_resume_writes_what_the_uninterrupted_run_writes(
    uninterrupted, tmp_path, monkeypatch, capsys
):
    """Ctrl-C one step after the step-6 checkpoint, half way through epoch 1: exit 130 and the resume command;
    the resumed run takes batches 2 and 3 of that epoch, with their augmentations, not its first two again,
    and keeps every CSV row of the stopped run before its checkpoint."""
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    stopped = tmp_path / "stopped"
    ctrl_c = ["+callbacks.signal._target_=fault_injection.SendSignal", "+callbacks.signal.signal=SIGINT"]
    ctrl_c += ["+callbacks.signal.at=fit", "+callbacks.signal.step=6"]
    assert run_app("train.py", *ARGS, *ctrl_c, f"hydra.run.dir={stopped}", cwd=tmp_path, monkeypatch=monkeypatch) == 130
    assert "stopped by SIGINT during training at step 7 (epoch 1); resume with" in capsys.readouterr().err
    assert torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert (
        run_app("train.py", *ARGS, "ckpt_path=last", f"hydra.run.dir={stopped}", cwd=tmp_path, monkeypatch=monkeypatch)
        == 0
    )
    assert_resumed_at(stopped, 6)
    assert "train data: epoch 1 continues at batch 2 of 4" in (stopped / "train.log").read_text()
    assert_same_outputs(stopped, uninterrupted)


def test_sigterm_exits_non_zero_keeps_last_checkpoint_and_says_how_to_resume(uninterrupted, tmp_path, monkeypatch):
    stopped = tmp_path / "stopped"
    process = start(stopped)
    wait_for_checkpoint(stopped, 4, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "stopped by SIGTERM during training at step" in stderr
    assert f"ckpt_path=last hydra.run.dir={stopped}" in stderr
    assert not (stopped / "metrics.json").exists()
    saved = torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert saved >= 4
    assert "stopped by SIGTERM" in (stopped / "train.log").read_text()
    assert (
        run_app("train.py", *ARGS, "ckpt_path=last", f"hydra.run.dir={stopped}", cwd=tmp_path, monkeypatch=monkeypatch)
        == 0
    )
    assert_resumed_at(stopped, saved)
    assert_same_outputs(stopped, uninterrupted)


def test_a_requeued_slurm_job_resumes_from_its_own_checkpoint(uninterrupted, tmp_path, monkeypatch):
    """SLURM requeues a preempted job with the same command; SLURM_RESTART_COUNT > 0 makes it resume."""
    run_dir = tmp_path / "job"
    assert (
        run_app(
            "train.py",
            *BASE,
            "trainer.max_steps=6",
            "validations=3",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    (run_dir / "metrics.json").unlink()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert run_app("train.py", *ARGS, f"hydra.run.dir={run_dir}", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    assert_resumed_at(run_dir, 6)
    metrics = read_metrics(run_dir)
    assert metrics["global_step"] == read_metrics(uninterrupted)["global_step"]
    assert metrics["init/dice"] == read_metrics(uninterrupted)["init/dice"]


def last_lr(checkpoint: Path) -> float:
    return torch.load(checkpoint, weights_only=True)["lr_schedulers"][0]["_last_lr"][0]


def test_resuming_with_more_steps_follows_the_new_schedule_to_zero(uninterrupted, tmp_path, monkeypatch):
    short = tmp_path / "short"
    assert (
        run_app(
            "train.py",
            *BASE,
            "trainer.max_steps=6",
            "validations=3",
            f"hydra.run.dir={short}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert last_lr(short / "checkpoints" / "last.ckpt") == pytest.approx(0, abs=1e-12)
    longer = tmp_path / "longer"
    assert (
        run_app(
            "train.py",
            *ARGS,
            f"ckpt_path={short / 'checkpoints' / 'last.ckpt'}",
            f"hydra.run.dir={longer}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert "cosine spans 6 steps, this run 12" in (longer / "train.log").read_text()
    # The extended run ends where the run planned for 12 steps from the start ends: at a learning rate of 0,
    # not climbing back towards the base rate as the old 6-step cosine would.
    assert last_lr(longer / "checkpoints" / "last.ckpt") == pytest.approx(0, abs=1e-12)
    assert last_lr(uninterrupted / "checkpoints" / "last.ckpt") == pytest.approx(0, abs=1e-12)
    rows = [r for r in csv_rows(longer) if r.get("train/loss")]
    assert rows  # the extended run trained


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_resume_from_a_corrupt_checkpoint_fails_naming_it_and_touches_nothing(
    uninterrupted, damage, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "csv").mkdir()
    log = (uninterrupted / "csv" / "metrics.csv").read_text()
    (run_dir / "csv" / "metrics.csv").write_text(log)
    data = (uninterrupted / "checkpoints" / "last.ckpt").read_bytes()
    bad = run_dir / "checkpoints" / "last.ckpt"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 100)
    assert (
        run_app("train.py", *ARGS, "ckpt_path=last", f"hydra.run.dir={run_dir}", cwd=tmp_path, monkeypatch=monkeypatch)
        == 1
    )
    err = capsys.readouterr().err
    assert f"{bad} is corrupt or truncated" in err and "Traceback" not in err
    assert (run_dir / "csv" / "metrics.csv").read_text() == log  # nothing touched
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert json.loads(json.dumps(sorted(p.name for p in run_dir.iterdir()))) == [
        ".hydra",
        "checkpoints",
        "csv",
        "train.log",
    ]
