"""The study end to end: a tiny sweep, its report, and a sweep with a failing member."""

from __future__ import annotations

import csv

import pytest
from omegaconf import OmegaConf
from PIL import Image

from unet_upsampling.report.build import write_report
from unet_upsampling.report.stats import mean_interval, paired_difference

from conftest import CONFIGS, TINY, compose_config, run_entry

FIGURES = [
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
    run_entry(
        "train.py",
        "-m",
        "upsample=deconv_k3,nearest_conv",
        "seed=0",
        *TINY,
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={root}",
        cwd=root,
    )
    return root


def test_report_has_every_file_one_row_per_run_and_real_figures(tiny_sweep):
    run_entry("scripts/report.py", str(tiny_sweep), cwd=tiny_sweep)
    with (tiny_sweep / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["mode"] for r in rows) == ["deconv_k3", "nearest_conv"]
    assert all(r["status"] == "ok" and float(r["val/dice"]) >= 0 for r in rows)
    assert {"init/flat_pef2", "val/noise_pef2", "val/boundary_f1", "params", "train_time_s"} <= rows[0].keys()
    for name in FIGURES:
        with Image.open(tiny_sweep / name) as image:
            assert image.size[0] > 300 and len(set(image.convert("L").getdata())) > 10, name
    report = (tiny_sweep / "report.md").read_text()
    assert "2 runs: 2 finished, 0 failed" in report
    assert "nearest_conv answers a constant with a constant" in report  # flat in, flat out at init
    assert "| deconv_k3 | 1 |" in report


def test_runs_log_artifacts_at_init_and_after_training(tiny_sweep):
    write_report(tiny_sweep, tiny_sweep / "again")
    rows = {r["mode"]: r for r in csv.DictReader((tiny_sweep / "again" / "results.csv").open())}
    assert float(rows["nearest_conv"]["init/flat_pef2"]) == 0
    assert float(rows["deconv_k3"]["init/flat_pef2"]) > 0.5  # random k=3 deconvolution paints a pattern
    assert (
        float(rows["deconv_k3"]["init/kernel_imbalance"]) > 0.5 and rows["nearest_conv"]["init/kernel_imbalance"] == ""
    )
    for mode in rows:
        assert (tiny_sweep / ("0" if mode == "deconv_k3" else "1") / "flat_field.png").is_file()


def test_failed_member_does_not_stop_the_sweep_and_is_reported(tmp_path):
    result = run_entry(
        "train.py",
        "-m",
        "upsample=deconv",
        "model.depth=2,6",
        *TINY[1:],
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    assert (tmp_path / "0" / "metrics.json").is_file() and not (tmp_path / "1" / "metrics.json").exists()
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "2 runs: 1 finished, 1 failed" in report and "## Failed runs" in report
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {r["status"]: r["run_dir"] for r in rows} == {"ok": str(tmp_path / "0"), "failed": str(tmp_path / "1")}


def test_study_experiment_sweeps_eight_modes_by_three_seeds():
    cfg = OmegaConf.load(CONFIGS / "experiment" / "upsample_study.yaml")
    modes = cfg.hydra.sweeper.params.upsample.split(",")
    assert len(modes) == 8 and set(modes) <= {p.stem for p in (CONFIGS / "upsample").glob("*.yaml")}
    assert cfg.hydra.sweeper.params.seed == "0,1,2"
    assert compose_config("train", ["experiment=upsample_study"]).task_name == "upsample_study"


def test_intervals_and_paired_differences():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2 and low == pytest.approx(2 - 4.302653 / 3**0.5, rel=1e-5) and high > 3
    assert mean_interval([5.0])[0] == 5 and mean_interval([5.0])[1] != mean_interval([5.0])[1]  # NaN
    diff, low, high, n = paired_difference({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.5, 1: 1.5, 3: 9.0})
    assert (diff, n) == (0.5, 2) and low == high == 0.5
