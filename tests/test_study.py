"""The study end to end: every mode joins the sweep by its YAML alone, a tiny sweep, and its report."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from test_data import fake_pet_tree
from test_measures import is_headline_or_detail

from unet_upsampling import packing
from unet_upsampling.report.build import write_report
from unet_upsampling.report.cli import main
from unet_upsampling.report.tables import TABLES

from conftest import CONFIGS, ROOT, TINY, UPSAMPLE_MODES, compose_config, read_metrics, run_app

FIGURES = [
    "curves.png",
    "quality.png",
    "periodic_energy.png",
    "flat_fields.png",
    "predictions.png",
    "spectra.png",
    "quality_vs_artifacts.png",
]


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert (
            run_app(
                "train.py",
                "-m",
                "upsample=deconv_k3,nearest_conv",
                "seed=0",
                *TINY,
                "trainer.max_epochs=2",
                f"hydra.sweep.dir={root}",
                cwd=root,
                monkeypatch=monkeypatch,
            )
            == 0
        )
    return root


def test_report_has_every_file_one_row_per_run_and_real_figures(tiny_sweep, monkeypatch):
    main([str(tiny_sweep)])
    with (tiny_sweep / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["mode"] for r in rows) == ["deconv_k3", "nearest_conv"]
    assert all(r["status"] == "ok" and float(r["val/dice"]) >= 0 for r in rows)
    assert {"init/flat_pef2", "val/noise_pef2", "val/boundary_f1", "params", "train_time_s", "eval_time_s"} <= rows[
        0
    ].keys()
    for name in FIGURES:
        with Image.open(tiny_sweep / name) as image:
            assert image.size[0] > 300 and len(set(image.convert("L").getdata())) > 10, name
    report = (tiny_sweep / "report.md").read_text()
    assert "2 runs: 2 finished, 0 failed" in report
    assert "nearest_conv, whose block maps a constant to a constant, answers a constant with a constant, as " in report
    assert "| deconv_k3 | 1 |" in report


def test_report_without_the_figure_that_shows_the_data(tiny_sweep):
    main([str(tiny_sweep), "--out", str(tiny_sweep / "public"), "--no-data-figures"])
    written = {p.name for p in (tiny_sweep / "public").iterdir()}
    assert "predictions.png" not in written and {"flat_fields.png", "report.md", "results.csv"} <= written
    assert "predictions.png" not in (tiny_sweep / "public" / "report.md").read_text()


def test_runs_log_what_a_user_sees_at_init_after_training_and_on_the_test_split(tiny_sweep):
    for run in ("0", "1"):
        metrics = read_metrics(tiny_sweep / run)
        for stage in ("init", "val", "test"):
            assert {f"{stage}/lpef2", f"{stage}/prob_pef2", f"{stage}/shift1_disagree_pm"} <= metrics.keys()
            assert {f"{stage}/shift2_disagree_pm", f"{stage}/prob_pef4", f"{stage}/phase_excess4_pm"} <= metrics.keys()
            assert {f"{stage}/phase_fp_c{c}_{a}{b}_pm" for c in (0, 1) for a in range(4) for b in range(4)} <= (
                metrics.keys()
            )
        for grey in (25, 50, 75):
            assert {
                f"val/flat_std_grey{grey}",
                f"val/flat_pef_grey{grey}",
                f"init/flat_std_grey{grey}",
            } <= metrics.keys()
        assert 0 <= metrics["val/shift1_disagree_pm"] <= 1000 and 0 <= metrics["val/phase_excess2_pm"] <= 1000
    assert read_metrics(tiny_sweep / "1")["init/flat_std_grey25"] == 0  # nearest_conv: flat at every grey level
    assert read_metrics(tiny_sweep / "0")["init/flat_std_grey25"] > 0  # deconv_k3


def test_every_measure_a_run_writes_is_in_the_catalogue_and_a_column_of_the_report(tiny_sweep):
    """A new key in metrics.json fails here until the catalogue shows it (or names it a detail); a measure the
    runs hold is a column of the report's tables."""
    main([str(tiny_sweep), "--out", str(tiny_sweep / "columns")])
    text = (tiny_sweep / "columns" / "report.md").read_text()
    headers = [line for line in text.splitlines() if line.startswith("| mode | seeds |")]
    columns = {cell.strip() for line in headers for cell in line.strip("|").split("|")[2:]}
    for run in ("0", "1"):
        metrics = read_metrics(tiny_sweep / run)
        assert [k for k in metrics if not is_headline_or_detail(k)] == []
        assert metrics.keys() & {k for _, keys in TABLES for k in keys} <= columns


def test_runs_log_artifacts_at_init_and_after_training(tiny_sweep):
    write_report(tiny_sweep, tiny_sweep / "again")
    rows = {r["mode"]: r for r in csv.DictReader((tiny_sweep / "again" / "results.csv").open())}
    assert float(rows["nearest_conv"]["init/flat_pef2"]) == 0
    assert float(rows["deconv_k3"]["init/flat_pef2"]) > 0.5  # random k=3 deconvolution paints a pattern
    assert float(rows["deconv_k3"]["init/kernel_imbalance"]) > 0.5
    assert rows["nearest_conv"]["init/kernel_imbalance"] == ""
    assert rows["nearest_conv"]["upsample_flat_at_init"] == "True" and rows["deconv_k3"]["upsample_flat_at_init"] == (
        "False"
    )
    for mode in rows:
        assert (tiny_sweep / ("0" if mode == "deconv_k3" else "1") / "flat_field.png").is_file()


@pytest.mark.slow
def test_the_study_sweeps_every_mode_and_a_new_mode_joins_by_its_yaml_alone(tmp_path, monkeypatch):
    """experiment=upsample_study with upsample='glob(*)': one YAML file more in configs/upsample/ is one mode more.
    (On a copy of the configs, so that tests running beside this one see the package's own.)"""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    extra = configs / "upsample" / "test_only_nearest_conv_k5.yaml"
    extra.write_text("defaults:\n  - nearest_conv\n  - _self_\n\nkernel_size: 5\n")
    assert (
        run_app(
            "train.py",
            f"--config-path={configs}",  # before the overrides, as on a command line
            "-m",
            "experiment=upsample_study",
            "upsample=glob(*)",
            "seed=0",
            *TINY,
            "trainer.fast_dev_run=true",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    for run in (d for d in (tmp_path / "sweep").iterdir() if d.is_dir() and (d / ".hydra").is_dir()):
        metrics = read_metrics(run)  # every mode trains, validates, probes and tests
        assert {"val/dice", "val/iou", "val/dice_c0", "val/dice_c1", "val/iou_c1", "test/dice"} <= metrics.keys()
        assert {"val/pef2", "val/flat_std"} <= metrics.keys(), run
    swept = sorted(
        next(line for line in (d / ".hydra" / "overrides.yaml").read_text().splitlines() if "upsample=" in line).split(
            "upsample="
        )[1]
        for d in (tmp_path / "sweep").iterdir()
        if (d / "metrics.json").is_file()
    )
    assert swept == sorted([*UPSAMPLE_MODES, extra.stem])
    assert compose_config("train", ["experiment=upsample_study"]).experiment_name == "upsample_study_synthetic"


def test_the_gpu_study_has_a_budget_per_shipped_dataset_and_ten_seeds():
    """data= picks the budget (isbi2012 by default); vnc_em at full resolution; Pet and VOC stay options."""
    budgets = {
        "isbi2012": (2000, 256, 16, 1.0),
        "dsb2018_nuclei": (2000, 256, 16, 1.0),
        "vnc_em": (4000, 256, 16, 1.0),
        "oxford_pet": (12000, 256, 16, 1.0),
        "voc": (12000, 256, 16, 1.0),
    }
    default = compose_config("train", ["experiment=upsample_study_gpu"])
    assert default.data.source.root.endswith("isbi2012-membrane") and default.experiment_name.endswith("isbi2012")
    assert default.trainer.accelerator == "gpu" and default.trainer.precision == "bf16-mixed"
    for data, budget in budgets.items():
        cfg = compose_config("train", ["experiment=upsample_study_gpu", f"data={data}"])
        assert (cfg.trainer.max_steps, cfg.data.crop_size, cfg.data.batch_size, cfg.data.scale) == budget, data
        assert cfg.validations == 10 and cfg.experiment_name == f"upsample_study_gpu_{data}"
    assert compose_config("train", ["data=vnc_em"]).data.scale == 0.5  # the CPU study's half size stays
    gpu_sweep = OmegaConf.load(CONFIGS / "experiment" / "upsample_study_gpu.yaml").hydra.sweeper.params
    assert gpu_sweep.seed == ",".join(map(str, range(10)))


def test_the_gpu_study_steps_can_differ_per_mode():
    """study_budget.<data>.mode_steps.<mode> overrides the dataset's steps for that mode alone."""
    per_mode = ["experiment=upsample_study_gpu", "+study_budget.isbi2012.mode_steps.pixelshuffle=4000"]
    assert compose_config("train", [*per_mode, "upsample=pixelshuffle"]).trainer.max_steps == 4000
    assert compose_config("train", [*per_mode, "upsample=deconv"]).trainer.max_steps == 2000
    assert compose_config("train", [*per_mode, "trainer.max_steps=7"]).trainer.max_steps == 7  # the command line wins


def gpu_study_launcher():
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=upsample_study_gpu"], return_hydra_config=True)
    return cfg.hydra.launcher, instantiate(cfg.hydra.callbacks.split_threads)


def test_the_gpu_study_packs_runs_where_cuda_is_visible_and_runs_one_at_a_time_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    launcher, split = gpu_study_launcher()
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 1 and split.n_jobs == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    launcher, split = gpu_study_launcher()
    assert launcher.n_jobs == 8 and split.n_jobs == 8  # all on the trainer's one device, whatever the count
    assert packing.data_workers(8, RunMode.MULTIRUN) == packing.cpu_share(8)[1]
    assert packing.data_workers(8, RunMode.RUN) == packing.cpu_share(1)[1]  # a single run has the machine


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: the affinity cannot be narrowed")
def test_the_host_cpus_are_those_this_process_may_run_on():
    """What taskset or a container's cpuset grants, not the machine's count."""
    granted = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(granted)})
        assert packing.host_cpus() == 1
    finally:
        os.sched_setaffinity(0, granted)
    assert packing.host_cpus() == len(granted)


def test_the_cpus_are_split_between_the_runs_side_by_side(monkeypatch):
    assert packing.cpu_share(8, cpus=16) == (2, 1)  # the H200 machine: 16 cores, 8 runs
    assert packing.cpu_share(1, cpus=16) == (16, 8)  # one run: data workers capped
    assert packing.cpu_share(4, cpus=2) == (1, 0)  # more runs than cores: one thread each, loading in-process
    monkeypatch.setattr(packing, "host_cpus", lambda: 6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for mode, expected in ((RunMode.MULTIRUN, 3), (RunMode.RUN, 6)):  # conftest restores the threads afterwards
        packing.SplitThreads(n_jobs=2).on_job_start(OmegaConf.create({"hydra": {"mode": mode}}))
        assert torch.get_num_threads() == expected and os.environ["OMP_NUM_THREADS"] == str(expected)


def composed_sweep(*overrides: str):
    """The sweeper's parameters of the composed config (what train.py -m expands), command line aside."""
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True).hydra.sweeper.params


def test_the_study_sweeps_the_protocols_modes_on_the_first_block_of_seeds_at_their_frozen_rates():
    protocol = OmegaConf.load(ROOT / "docs" / "study" / "protocol.yaml")
    sweep = composed_sweep("experiment=upsample_study", "data=isbi2012")
    assert sweep.upsample.split(",") == [protocol.reference, *protocol.primary_modes]
    assert sweep.seed == ",".join(map(str, protocol.first_block)) and "task.optimizer.lr" not in sweep
    for data in protocol.datasets:
        cfg = compose_config("train", ["experiment=upsample_study", f"data={data}"])
        assert cfg.trainer.max_steps == protocol.budgets[data] and (cfg.eval_weights, cfg.validate_at_init) == (
            "last",
            False,
        )
    frozen = "++study_rates.vnc_em.nearest_conv=0.01"  # a dataset the protocol leaves to the default rate
    rates = {  # resolved at once: ${hydra:...} answers for the config composed last
        mode: compose_config(
            "train", ["experiment=upsample_study", "data=vnc_em", f"upsample={mode}", frozen]
        ).task.optimizer.lr
        for mode in ("nearest_conv", "deconv")
    }
    assert rates == {"nearest_conv": 0.01, "deconv": 0.003}
    pilot = ["experiment=upsample_study", "data=vnc_em", "upsample=nearest_conv", frozen, "task.optimizer.lr=0.001"]
    assert compose_config("train", pilot).task.optimizer.lr == 0.001  # the pilot's grid on the command line wins


def test_a_mode_trains_its_own_steps_where_the_budget_names_them():
    mode_steps = "+study_budget.isbi2012.mode_steps.deconv_k3=3200"
    steps = {  # resolved at once: ${hydra:...} answers for the config composed last
        mode: compose_config(
            "train", ["experiment=upsample_study", "data=isbi2012", f"upsample={mode}", mode_steps]
        ).trainer.max_steps
        for mode in ("deconv_k3", "deconv")
    }
    assert steps == {"deconv_k3": 3200, "deconv": 1600}
    assert compose_config("train", ["experiment=upsample_study", "data=vnc_em"]).trainer.max_steps == 800


def test_the_gpu_study_config_runs_on_a_cpu_on_a_tiny_pet_tree(tmp_path, monkeypatch):
    """The same config, smoke-run on the CPU (trainer.accelerator=cpu) on a fake Oxford-IIIT Pet tree: the joblib
    launcher runs one job at a time there, which gets every CPU and a data loader worker."""
    fake_pet_tree(tmp_path / "pets", n=4)
    assert (
        run_app(
            "train.py",
            "-m",
            "experiment=upsample_study_gpu",
            "data=oxford_pet",
            "trainer.accelerator=cpu",
            "upsample=deconv",
            "seed=0",
            "trainer.fast_dev_run=true",
            f"data.source.root={tmp_path / 'pets'}",
            "data.source.download=false",
            "data.batch_size=2",
            "data.crop_size=32",
            "model.depth=2",
            "model.base_channels=4",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    metrics = read_metrics(tmp_path / "sweep" / "0")
    assert {"val/dice", "val/dice_c1", "val/flat_std"} <= metrics.keys()
    assert not any(k.startswith("init/") for k in metrics)  # the study's runs start training at once
    threads, workers = packing.cpu_share(1)
    assert (
        f"1 run(s) side by side on {packing.host_cpus()} CPUs: {threads} torch thread(s) and {workers} data"
        in (tmp_path / "sweep" / "0" / "train.log").read_text()
    )


@pytest.mark.slow
def test_cost_estimate_counts_every_mode_and_seed_and_scales_with_steps(capsys):
    import runpy

    estimate = runpy.run_path(str(ROOT / "scripts" / "estimate_cost.py"))["main"]
    tiny = ["model.depth=2", "model.base_channels=4", "data.crop_size=32", "validations=2"]
    one = estimate([*tiny, "trainer.max_steps=10", "--val-images", "3", "--tflops", "1"])
    twice = estimate([*tiny, "trainer.max_steps=20", "--val-images", "3", "--tflops", "1"])
    study = estimate([*tiny, "experiment=upsample_study", "trainer.max_steps=10", "--val-images", "3", "--tflops", "1"])
    assert 0 < one["flop"] < twice["flop"] < 2 * one["flop"]  # training doubles, evaluation stays
    # the protocol's 5 modes x the first block's 4 seeds: exact, so that a missing seed (or mode) fails
    primary = {"deconv", "deconv_bilinear", "deconv_bilinear_trainable", "nearest_conv", "bilinear_conv"}
    assert study["runs"] == 5 * 4 and study["per_run"].keys() == primary
    assert study["flop"] == pytest.approx(4 * sum(study["per_run"].values()))
    # the same run but for the study's evaluations: no validation before training, the final weights measured
    assert study["per_run"]["deconv"] < one["flop"]
    narrowed = estimate(
        [
            *tiny,
            "experiment=upsample_study",
            "trainer.max_steps=10",
            "upsample=deconv",
            "task.optimizer.lr=0.003",
            "seed=1",
            "--val-images",
            "3",
            "--tflops",
            "1",
        ]
    )
    assert narrowed["runs"] == 1 and narrowed["flop"] == pytest.approx(study["per_run"]["deconv"])  # the command line's
    assert study["gpu_hours"] == pytest.approx(study["flop"] / 1e12 / 3600)
    per_step = 50.0 / 8 / 1000  # the default measured sweep: 8 runs side by side, 1000 steps each, 50 s
    assert one["gpu_seconds_per_run"] == {"deconv": pytest.approx(10 * per_step)}
    gpu = estimate([*tiny, "experiment=upsample_study_gpu", "data=isbi2012", "upsample=deconv", "--val-images", "3"])
    assert gpu["gpu_seconds_per_run"] == {"deconv": pytest.approx(2000 * per_step)}  # 10 seeds at its frozen rate
    assert gpu["runs"] == 10
    assert gpu["measured_gpu_hours"] == pytest.approx(10 * 2000 * per_step / 3600)
    assert "| h200_packed8_64px | 8 | 1000 | 50 | 6.2 | 6.2 | issue 25, H200, 2026-12-04" in capsys.readouterr().out
