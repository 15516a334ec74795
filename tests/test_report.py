"""The report and the cross-dataset summary, from fake run directories with known numbers (no training)."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from scipy import stats

from unet_upsampling.report.across import load_studies, resolvable_difference, write_summary
from unet_upsampling.report.build import findings, flat_at_init, kept_figure_lines, write_csv, write_report
from unet_upsampling.report.cli import main
from unet_upsampling.report.compare import Comparison, correct, select, verdict
from unet_upsampling.report.figures import (
    curve,
    curves,
    image_dice,
    predictions_figure,
    quality_figure,
    quality_vs_artifacts_across_figure,
)
from unet_upsampling.report.runs import RUN_COLUMNS, Run, by_mode, collect_runs, deduplicate, runs_from_csv
from unet_upsampling.report.stats import PairedTest, holm, paired_test, seeds_needed
from unet_upsampling.report.tables import TABLES, fmt, fmt_interval, fmt_p


def write_run(
    run_dir: Path,
    mode: str,
    seed: int,
    metrics: dict | None,
    data: str = "synthetic",
    model: str = "unet",
    config: dict | None = None,
    job_name: str = "train",
) -> Path:
    """A run directory as train.py leaves it: .hydra/config.yaml, .hydra/hydra.yaml and (if finished) metrics.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({"seed": seed, "task_name": "train", **(config or {})}), run_dir / ".hydra/config.yaml"
    )
    hydra = {
        "hydra": {
            "runtime": {"choices": {"upsample": mode, "data": data, "model": model}},
            "job": {"name": job_name},
            "overrides": {"task": [f"upsample={mode}", f"seed={seed}"]},
        }
    }
    OmegaConf.save(OmegaConf.create(hydra), run_dir / ".hydra/hydra.yaml")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def fake_metrics(mode: str, seed: int, dice: float) -> dict:
    """metrics.json of a finished run: val/dice as given, the other metrics made up from mode and seed."""
    return {
        "val/dice": dice,
        "val/dice_c0": dice + 0.05,
        "val/dice_c1": dice - 0.05,
        "val/boundary_f1": 0.5 + 0.01 * seed,
        "val/pef2": 0.01 * (seed + 1),
        "init/pef2": 0.02,
        "val/noise_pef2": 0.03,
        "init/noise_pef2": 0.04,
        "val/flat_std": 0.0 if mode == "nearest_conv" else 1e-3 * (seed + 1),
        "params": 1000,
        "train_time_s": 10.0 + seed,
    }


def write_sweep(root: Path, dice: dict[str, list[float]], **kwargs) -> Path:
    """One run directory per mode and seed (seeds 0, 1, ...), numbered like a Hydra sweep."""
    job = 0
    for mode, values in dice.items():
        for seed, value in enumerate(values):
            write_run(root / str(job), mode, seed, fake_metrics(mode, seed, value), **kwargs)
            job += 1
    return root


def interval(values: list[float]) -> tuple[float, float, float]:
    """The 95% Student-t interval, by hand."""
    x = np.asarray(values)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def is_real_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 300 and len(set(image.convert("L").getdata())) > 10


def runs_of(mode: str, metrics: list[dict]) -> list[Run]:
    """Finished runs of one mode, seeds 0, 1, ..., in memory."""
    return [Run(Path(f"/sweep/{mode}/{seed}"), mode, seed, m) for seed, m in enumerate(metrics)]


# ---- reading run directories


@pytest.mark.parametrize("missing", ["empty", "absent"])
def test_no_run_directory_is_a_clear_error(tmp_path, missing):
    root = tmp_path / "sweep"
    if missing == "empty":
        root.mkdir()
    message = re.escape(f"no run directory (a folder holding .hydra/config.yaml) was found under {root}")
    for call in (lambda: collect_runs(root), lambda: write_report(root), lambda: write_summary([root], tmp_path)):
        with pytest.raises(FileNotFoundError, match=message) as error:
            call()
        assert "upsample=deconv,nonexistent" in str(error.value) and "the path is wrong" in str(error.value)
        assert ("does not exist" in str(error.value)) == (missing == "absent")
    with pytest.raises(SystemExit) as exit_:  # the command line prints the message alone
        main([str(root)])
    assert exit_.value.code == 1


@pytest.mark.parametrize(
    ("job_name", "logs", "quoted"),
    [
        ("train", {"train.log": "start\nCUDA out of memory\n"}, "CUDA out of memory"),
        ("study", {"study.log": "a\nb\n", "train.log": "c\n"}, "b"),
        ("study", {"study.log": "", "train.log": "x\nNaN loss\n"}, "NaN loss"),
        ("train", {}, None),
    ],
)
def test_a_failed_run_quotes_the_last_line_of_its_log(tmp_path, job_name, logs, quoted):
    """The job log is <hydra.job.name>.log; the run's config may hold interpolations only Hydra resolves."""
    config = {"experiment_name": "upsample_study_${hydra:runtime.choices.data}"}
    run_dir = write_run(tmp_path / "0", "deconv", 0, None, config=config, job_name=job_name)
    for name, text in logs.items():
        (run_dir / name).write_text(text)
    (run,) = collect_runs(tmp_path)
    assert not run.ok
    assert run.error == "no metrics.json" + (f" (last log line: {quoted})" if quoted else "")


def test_runs_carry_dataset_model_and_class_names(tmp_path):
    names = {"data": {"class_names": ["background", "nucleus"]}}
    write_run(tmp_path / "0", "deconv", 0, {}, data="dsb2018_nuclei", model="encoder_unet", config=names)
    write_run(tmp_path / "1", "deconv", 1, {})  # an old run: no class names
    runs = collect_runs(tmp_path)
    assert [(r.data, r.model, r.class_names) for r in runs] == [
        ("dsb2018_nuclei", "encoder_unet", ["background", "nucleus"]),
        ("synthetic", "unet", None),
    ]


def test_a_runs_steps_and_rate_that_read_hydras_node_are_resolved_with_the_runs_own(tmp_path):
    """experiment=upsample_study sets trainer.max_steps from the data choice: Hydra saves it unresolved."""
    budget = "${oc.select:'study_budget.${hydra:runtime.choices.data}.steps',${study_budget.default.steps}}"
    study = {
        "study_budget": {"default": {"steps": 300}, "isbi2012": {"steps": 1600}},
        "study_rates": {"default": 0.003, "isbi2012": {"deconv": 0.001}},
        "trainer": {"max_steps": budget},
        "task": {"optimizer": {"lr": "${oc.select:'study_rates.${hydra:runtime.choices.data}.deconv',0.003}"}},
    }
    write_run(tmp_path / "0", "deconv", 0, {}, data="isbi2012", config=study)
    write_run(tmp_path / "1", "deconv", 1, {}, data="vnc_em", config=study)
    assert [(r.data, r.max_steps, r.lr) for r in collect_runs(tmp_path)] == [
        ("isbi2012", 1600, 0.001),
        ("vnc_em", 300, 0.003),
    ]


def test_of_runs_sharing_mode_and_seed_only_the_newest_counts(tmp_path):
    old = write_run(tmp_path / "sweep1" / "0", "deconv", 0, fake_metrics("deconv", 0, 0.8))
    other = write_run(tmp_path / "sweep1" / "1", "deconv", 1, fake_metrics("deconv", 1, 0.8))
    new = write_run(tmp_path / "sweep2" / "0", "deconv", 0, fake_metrics("deconv", 0, 0.2))
    failed = write_run(tmp_path / "sweep2" / "1", "deconv", 1, None)  # failed: neither counted nor a duplicate
    os.utime(old / "metrics.json", (1e9, 1e9))
    counted, left_out = deduplicate(collect_runs(tmp_path))
    assert sorted(r.dir for r in counted) == sorted([other, new, failed]) and [r.dir for r in left_out] == [old]


# ---- the report of one sweep


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A root holding two sweeps: deconv seed 0 twice (the newer counts), a NaN Dice, a failed run."""
    root = tmp_path_factory.mktemp("root")
    dice = {("deconv", 0): 0.8, ("deconv", 1): 0.82, ("deconv", 2): 0.85}
    dice |= {("nearest_conv", 0): 0.81, ("nearest_conv", 1): float("nan"), ("nearest_conv", 2): 0.86}
    for job, ((mode, seed), value) in enumerate(dice.items()):
        write_run(root / "sweep1" / str(job), mode, seed, fake_metrics(mode, seed, value))
    os.utime(root / "sweep1" / "0" / "metrics.json", (1e9, 1e9))
    write_run(root / "sweep2" / "0", "deconv", 0, fake_metrics("deconv", 0, 0.2))
    write_run(root / "sweep2" / "1", "deconv", 3, None)
    main([str(root)])
    return root, (root / "report.md").read_text()


def test_report_tables_give_means_intervals_and_the_seeds_behind_them(report):
    _, text = report
    mean, low, high = interval([0.2, 0.82, 0.85])  # sweep2's seed 0, not sweep1's
    deconv = fmt_interval(mean, max(low, 0), min(high, 1))  # a Dice interval stays within [0, 1]
    assert low < 0 and high > 1
    assert f"| deconv | 3 | {deconv} |" in text
    # the NaN is not a value: 2 of the row's 3 seeds, too few for an interval
    assert f"| nearest_conv | 3 | {fmt(np.mean([0.81, 0.86]))} (n=2) |" in text
    cost = fmt_interval(*interval([10.0, 11.0, 12.0]))
    assert "| mode | seeds | params | train_time_s |" in text and f"| deconv | 3 | 1000 | {cost} |" in text
    left_out = re.search(r"Left out, without a value in any run .*: (.*)\.", text).group(1)
    assert "`trainable_params`" in left_out and "`test/dice`" in left_out and "`val/dice`" not in left_out
    paired = f"{fmt(np.mean([0.81 - 0.2, 0.86 - 0.85]))} (no interval below 3 seeds)"
    p = stats.ttest_rel([0.81, 0.86], [0.2, 0.85]).pvalue
    row = f"| nearest_conv | {paired} | {paired} | 2 | {fmt_p(p)} | {fmt_p(p)} | too few seeds (n = 2 < 3) |"
    assert row in text  # one comparison: Holm p = p


def test_report_flags_duplicates_and_failures(report):
    root, text = report
    assert "8 runs: 7 finished, 1 failed" in text and "1 duplicate runs left out" in text
    assert "## Duplicate runs" in text and "only the one whose metrics.json is the newest counts" in text
    assert f"| deconv | 0 | {root / 'sweep2' / '0'} | {root / 'sweep1' / '0'} |" in text
    with (root / "results.csv").open() as f:
        status = {r["run_dir"]: r["status"] for r in csv.DictReader(f)}
    assert status[str(root / "sweep1" / "0")] == "duplicate" and status[str(root / "sweep2" / "0")] == "ok"
    assert status[str(root / "sweep2" / "1")] == "failed" and list(status.values()).count("ok") == 6


# ---- findings


def dice_runs(mode: str, values: list[float]) -> list[Run]:
    return runs_of(mode, [{"val/dice": v} for v in values])


def test_runner_up_is_compared_by_its_paired_difference_to_the_leader():
    # The means' intervals overlap widely, but seed by seed b is always a little lower.
    groups = {"a": dice_runs("a", [0.70, 0.80, 0.90]), "b": dice_runs("b", [0.69, 0.79, 0.885])}
    expected = fmt_interval(*interval([0.69 - 0.70, 0.79 - 0.80, 0.885 - 0.90]))
    assert (
        f"- Runner-up b: paired difference in val/dice to the leader a (same seed) {expected} over 3 seeds: "
        "lower, the interval excludes 0 before any correction (exploratory: what survives correction is under "
        "Comparisons)." in findings(groups)
    )
    groups["b"] = dice_runs("b", [0.71, 0.79, 0.895])
    expected = fmt_interval(*interval([0.71 - 0.70, 0.79 - 0.80, 0.895 - 0.90]))
    assert f"{expected} over 3 seeds: the seeds do not separate them." in findings(groups)[1]
    groups = {"a": dice_runs("a", [0.9]), "b": dice_runs("b", [0.8, 0.7])}
    assert findings(groups)[1].endswith(f"(same seed) {fmt(0.8 - 0.9)} over 1 paired seed: too few for an interval.")


def test_uneven_overlap_theory_quotes_paired_differences():
    k2 = runs_of("deconv", [{"val/flat_std": v, "val/pef2": 0.1} for v in (0.01, 0.02, 0.03)])
    k3 = runs_of("deconv_k3", [{"val/flat_std": v, "val/pef2": p} for v, p in ((0.05, 0.1), (0.07, 0.2), (0.06, 0))])
    lines = [line for line in findings({"deconv": k2, "deconv_k3": k3}) if "uneven overlap" in line]
    assert lines == [
        "- Theory, uneven overlap: `val/flat_std` of deconv_k3 minus that of deconv (k=2), same seed: "
        f"{fmt_interval(*interval([0.05 - 0.01, 0.07 - 0.02, 0.06 - 0.03]))} over 3 seeds: higher, the interval "
        "excludes 0 before any correction (exploratory: what survives correction is under Comparisons).",
        "- Theory, uneven overlap: `val/pef2` of deconv_k3 minus that of deconv (k=2), same seed: "
        f"{fmt_interval(*interval([0.1 - 0.1, 0.2 - 0.1, 0 - 0.1]))} over 3 seeds: the seeds do not separate them.",
    ]


def test_flat_at_init_statements_follow_each_runs_flag():
    def probe(flat: bool | None, pef: float) -> dict:
        return {"init/flat_pef2": pef, "init/flat_std": pef / 10} | (
            {} if flat is None else {"upsample_flat_at_init": flat}
        )

    groups = {
        "pixelshuffle": runs_of("pixelshuffle", [probe(True, 0), probe(True, 0)]),
        "deconv_k3": runs_of("deconv_k3", [probe(False, 0.6), probe(False, 0.7)]),
        "deconv_bilinear": runs_of("deconv_bilinear", [probe(True, 0.3)]),
        "bilinear_conv": runs_of("bilinear_conv", [probe(True, 0), probe(None, 0.5)]),  # an old run beside a new
        "nearest_conv": runs_of("nearest_conv", [probe(None, 0)]),  # old runs only
        "deconv": runs_of("deconv", [probe(True, 0), probe(False, 0.5)]),
    }
    assert flat_at_init(groups) == [
        "- Theory, flat in -> flat out at init: pixelshuffle, whose block maps a constant to a constant, "
        "answers a constant with a constant, as expected (largest init/flat_pef 0, init/flat_std up to 0).",
        "- Theory, uneven block -> pattern at init: deconv_k3, whose block does not map a constant to a constant, "
        "answers a constant with a pattern, as expected (largest init/flat_pef 0.7, init/flat_std up to 0.07).",
        "- Theory, flat in -> flat out at init: deconv_bilinear, whose block maps a constant to a constant, "
        "answers a constant with a pattern, against the expectation (largest init/flat_pef 0.3, "
        "init/flat_std up to 0.03).",
        "- Theory, flat in -> flat out at init: bilinear_conv, whose block maps a constant to a constant, "
        "answers a constant with a constant, as expected (largest init/flat_pef 0, init/flat_std up to 0).",
        "- deconv: its runs disagree on upsample_flat_at_init, so no statement on it.",
    ]


# ---- the summary across datasets


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """Three sweeps: synthetic with class names, isbi2012 with another model (and a duplicate), synthetic again."""
    root = tmp_path_factory.mktemp("studies")
    names = {"data": {"class_names": ["background", "cell"]}}
    a = write_sweep(
        root / "a",
        {"deconv": [0.80, 0.82, 0.85], "deconv_k3": [0.70, 0.75, 0.72], "nearest_conv": [0.81, 0.80, 0.86]},
        config=names,
    )
    b = write_sweep(
        root / "b", {"deconv": [0.60, 0.62], "pixelshuffle": [0.61, 0.66]}, data="isbi2012", model="encoder_unet"
    )
    write_run(b / "old", "pixelshuffle", 0, fake_metrics("pixelshuffle", 0, 0.0), data="isbi2012", model="encoder_unet")
    os.utime(b / "old" / "metrics.json", (1e9, 1e9))
    c = write_sweep(root / "c", {"deconv": [0.50, 0.52, 0.50], "bilinear_conv": [0.51, float("nan"), 0.55]})
    out = root / "out"
    main(["summary", str(a), str(b), str(c), "--out", str(out)])
    with (out / "summary.csv").open() as f:
        rows = {(r["dataset"], r["mode"]): r for r in csv.DictReader(f)}
    return SimpleNamespace(out=out, text=(out / "summary.md").read_text(), rows=rows, sweeps={"a": a, "b": b, "c": c})


def test_summary_labels_each_sweep_by_dataset_model_and_if_needed_directory(summary):
    assert sorted({dataset for dataset, _ in summary.rows}) == [
        "isbi2012 / encoder_unet",
        "synthetic (a)",
        "synthetic (c)",
    ]


def test_summary_numbers_are_the_means_intervals_and_paired_differences(summary):
    row = summary.rows[("synthetic (a)", "deconv_k3")]
    for suffix, expected in zip(("", " low", " high"), interval([0.70, 0.75, 0.72]), strict=True):
        assert float(row[f"val/dice{suffix}"]) == pytest.approx(expected)
    difference = interval([0.70 - 0.80, 0.75 - 0.82, 0.72 - 0.85])
    for suffix, expected in zip(("", " low", " high"), difference, strict=True):
        assert float(row[f"Dice - deconv{suffix}"]) == pytest.approx(expected)
    assert row["Dice - deconv n"] == "3" and row["seeds"] == "3" and float(row["params"]) == 1000
    assert summary.rows[("synthetic (a)", "deconv")]["Dice - deconv n"] == "0"  # the reference itself
    dice, delta = fmt_interval(*interval([0.70, 0.75, 0.72])), fmt_interval(*difference)
    boundary = fmt_interval(*interval([0.50, 0.51, 0.52]))
    assert f"| synthetic (a) | deconv_k3 | {dice} | {delta} (n=3) | {boundary} |" in summary.text
    assert f"| synthetic (a) | deconv | {fmt_interval(*interval([0.80, 0.82, 0.85]))} | reference |" in summary.text


def test_summary_counts_the_seeds_behind_each_value_and_leaves_duplicates_out(summary):
    row = summary.rows[("synthetic (c)", "bilinear_conv")]  # seed 1's Dice is NaN
    counts = (row["seeds"], row["val/dice n"], row["val/boundary_f1 n"], row["Dice - deconv n"])
    assert counts == ("3", "2", "3", "2")
    assert float(row["Dice - deconv"]) == pytest.approx(np.mean([0.51 - 0.50, 0.55 - 0.50]))
    assert f"| synthetic (c) | bilinear_conv | {fmt(np.mean([0.51, 0.55]))} (n=2) |" in summary.text
    pixelshuffle = summary.rows[("isbi2012 / encoder_unet", "pixelshuffle")]  # the older seed 0 is left out
    assert float(pixelshuffle["val/dice"]) == pytest.approx(0.635) and pixelshuffle["seeds"] == "2"
    assert f"| isbi2012 / encoder_unet | {summary.sweeps['b']} | 5 | 0 | 1 |" in summary.text


def test_summary_states_the_smallest_resolvable_dice_difference(summary):
    intervals = (interval([0.70 - 0.80, 0.75 - 0.82, 0.72 - 0.85]), interval([0.81 - 0.80, 0.80 - 0.82, 0.86 - 0.85]))
    halves = [(high - low) / 2 for _, low, high in intervals]
    assert (
        f"- synthetic (a): ±{fmt(float(np.median(halves)))}, the median over 2 modes "
        f"(range {fmt(min(halves))} to {fmt(max(halves))})" in summary.text
    )
    assert "a difference between two modes smaller than this is within seed noise" in summary.text
    (study,) = load_studies([summary.sweeps["c"]])  # bilinear_conv pairs with deconv on seeds 0 and 2 only
    _, low, high = interval([0.51 - 0.50, 0.55 - 0.50])
    assert resolvable_difference(study, "deconv") == pytest.approx([(high - low) / 2])


def test_summary_gives_dice_per_class_named_when_the_runs_name_them(summary):
    assert "### synthetic (a)\n\nMean `val/dice_c<i>` [95%]:\n\n| mode | background | cell |" in summary.text
    c0, c1 = fmt_interval(*interval([0.75, 0.80, 0.77])), fmt_interval(*interval([0.65, 0.70, 0.67]))
    assert f"| deconv_k3 | {c0} | {c1} |" in summary.text
    assert (
        "### isbi2012 / encoder_unet\n\nMean `val/dice_c<i>` [95%]:\n\n| mode | c0 | c1 |" in summary.text
    )  # no class names: c0, c1


def test_summary_figure_is_a_real_png(summary):
    assert is_real_png(summary.out / "quality_vs_artifacts.png")
    assert "![quality_vs_artifacts](quality_vs_artifacts.png)" in summary.text


@pytest.mark.parametrize("argv", [[], ["summary", "a"], ["protocol", "p.yaml"], ["--summary", "a", "--out", "o"]])
def test_cli_refuses_a_command_without_what_it_needs(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "usage: report.py" in capsys.readouterr().err


def test_a_summary_from_the_reports_results_csv_equals_the_one_from_the_run_directories(summary, tmp_path):
    """A published study keeps results.csv, not its run directories: the summary reads it, flags, names and all."""
    published = []
    for name, sweep in summary.sweeps.items():
        (tmp_path / name).mkdir()
        runs = collect_runs(sweep)
        write_csv(runs, tmp_path / name / "results.csv", deduplicate(runs)[1])  # as write_report writes it
        published.append(tmp_path / name if name != "b" else tmp_path / name / "results.csv")  # folder or file
    out = tmp_path / "out"
    write_summary(published, out)
    assert (out / "summary.csv").read_text() == (summary.out / "summary.csv").read_text()
    text = (out / "summary.md").read_text()
    sweeps = {str(summary.sweeps[n]): str(tmp_path / n) for n in summary.sweeps}
    assert text == re.sub("|".join(map(re.escape, sweeps)), lambda m: sweeps[m.group(0)], summary.text)
    assert "| mode | background | cell |" in text  # class names came through the file


def test_a_file_that_is_not_a_results_csv_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_:
        main(["summary", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err
    assert f"error: {tmp_path / 'results.csv'} is not a results.csv written by scripts/report.py" in err
    assert not (tmp_path / "out").exists()  # nothing written


# ---- statistics on hand-made numbers


def test_holm_matches_the_textbook_example():
    """Holm (1979) as Wikipedia works it: p = 0.01, 0.04, 0.03, 0.005 at alpha 0.05 rejects the first and last."""
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])  # 0.005*4, 0.01*3, max(0.03*2, .), max(0.04*1, 0.06)
    assert list(adjusted < 0.05) == [True, False, False, True]
    with_nan = holm([0.01, np.nan, 0.02])  # NaN is no test: m = 2
    assert with_nan[0] == pytest.approx(0.02) and np.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.02)
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_seeds_needed_gives_the_textbook_sample_sizes():
    """Paired t-test, two-sided alpha 0.05, power 0.8: effect size 1 needs 10 pairs, 0.5 needs 34 (G*Power);
    the noncentral t confirms n reaches 0.8 and n - 1 does not."""
    assert seeds_needed(sd=0.01, delta=0.01) == 10 and seeds_needed(sd=0.02, delta=0.01) == 34

    def power(n: int, effect: float) -> float:
        t = stats.t.ppf(0.975, n - 1)
        return stats.nct.sf(t, n - 1, effect * np.sqrt(n)) + stats.nct.cdf(-t, n - 1, effect * np.sqrt(n))

    for effect, n in ((1.0, 10), (0.5, 34)):
        assert power(n, effect) >= 0.8 > power(n - 1, effect)
    assert np.isnan(seeds_needed(0.0, 0.01)) and np.isnan(seeds_needed(np.nan, 0.01))


def test_paired_test_pairs_by_seed_and_matches_scipy():
    a = {0: 0.80, 1: 0.82, 2: 0.85, 5: 0.9}
    b = {0: 0.78, 1: 0.81, 2: 0.80, 3: 0.7}
    t = paired_test(a, b)
    assert t.n == 3 and t.differences == pytest.approx([0.02, 0.01, 0.05])
    assert t.p == pytest.approx(stats.ttest_rel([0.80, 0.82, 0.85], [0.78, 0.81, 0.80]).pvalue)
    assert t.sd == pytest.approx(np.std([0.02, 0.01, 0.05], ddof=1))
    assert (t.mean, t.low, t.high) == pytest.approx(interval([0.02, 0.01, 0.05]))
    constant = paired_test({0: 1.0, 1: 0.5}, {0: 0.75, 1: 0.25})  # the same difference every seed: no spread
    assert constant.mean == 0.25 and constant.p == 0.0 and paired_test({0: 1.0}, {0: 0.5}).n == 1


def comparison(differences: list[float], family: int = 1) -> Comparison:
    d = np.array(differences)
    test = PairedTest(d.mean(), *interval(d)[1:], len(d), d.std(ddof=1) if len(d) > 1 else np.nan, 0.5, d)
    return correct([Comparison("d", "m", test) for _ in range(family)])[0]


def test_verdicts_read_the_simultaneous_interval_with_the_protocols_rule():
    assert verdict(comparison([-0.03, -0.031, -0.029, -0.030]), 0.01) == "worse by more than the margin"
    assert verdict(comparison([0.001, 0.002, 0.0015, 0.001]), 0.01) == "better within the margin"
    assert verdict(comparison([0.004, -0.003, 0.002, -0.001]), 0.01) == "level within ±0.01"
    assert verdict(comparison([0.0, 0.02, 0.005, 0.015]), 0.01) == "non-inferior"
    assert verdict(comparison([0.03, -0.05, 0.02, -0.04]), 0.01) == "not resolved"
    assert verdict(comparison([0.03, -0.05]), 0.01) == "too few seeds (n = 2 < 3)"


def test_a_larger_family_widens_each_interval_by_bonferroni():
    d = [0.004, -0.003, 0.006, 0.001]
    one, eight = comparison(d), comparison(d, family=8)
    half = stats.t.ppf(1 - 0.05 / 16, 3) * np.std(d, ddof=1) / 2
    assert (eight.low, eight.high) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    assert one.high - one.low < eight.high - eight.low


# ---- learning-rate selection, test outcome, merging


def lr_run(root: Path, job: int, mode: str, seed: int, lr: float, val: float, test: float | None) -> Path:
    metrics = {"val/dice": val, "val/dice_c1": val - 0.1} | (
        {} if test is None else {"test/dice": test, "test/dice_c1": test - 0.2}
    )
    return write_run(root / str(job), mode, seed, metrics, config={"task": {"optimizer": {"lr": lr}}})


def lr_sweep(root: Path, with_test: bool = True, seeds: range = range(3)) -> Path:
    """deconv best at lr 0.003 on validation, nearest_conv best at 0.001; test Dice differs from val."""
    val = {
        ("deconv", 0.001): 0.70,
        ("deconv", 0.003): 0.80,
        ("nearest_conv", 0.001): 0.78,
        ("nearest_conv", 0.003): 0.60,
    }
    job = 0
    for (mode, lr), base in val.items():
        for seed in seeds:
            test = base - 0.1 + 0.01 * seed if with_test else None
            lr_run(root, job := job + 1, mode, seed, lr, base + 0.001 * seed, test)
    return root


def test_each_mode_is_chosen_at_its_best_validation_lr_and_reported_on_test(tmp_path):
    root = lr_sweep(tmp_path / "sweep")
    runs = collect_runs(root)
    assert len(deduplicate(runs)[1]) == 0  # the same mode and seed at two learning rates are no duplicates
    selection = select(by_mode(deduplicate(runs)[0]))
    assert selection.chosen == {"deconv": 0.003, "nearest_conv": 0.001} and selection.outcome == "test/dice"
    assert {r.lr for r in selection.groups["nearest_conv"]} == {0.001}
    main([str(root), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Outcome: `test/dice`, on the test split" in text
    assert "| nearest_conv | 0.78 (n=3)** | 0.601 (n=3) |".replace("0.78", "**0.781") in text  # chosen in bold
    # test/dice at the chosen learning rates: nearest_conv 0.68 + 0.01 s, deconv 0.70 + 0.01 s: -0.02 every seed
    assert "| nearest_conv | -0.02 | -0.02 | 3 |" in text
    assert "Mean `test/dice_c<i>` [95%]" in text
    with (tmp_path / "out" / "results.csv").open() as f:
        assert sorted({r["lr"] for r in csv.DictReader(f)}) == ["0.001", "0.003"]


def test_without_a_test_metric_the_report_falls_back_to_validation_and_says_so(tmp_path):
    main([str(lr_sweep(tmp_path / "sweep", with_test=False)), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Outcome: `val/dice`, because not every run holds a `test/dice`" in text and "not held out" in text
    assert "| nearest_conv | -0.02 | -0.02 | 3 |" in text  # 0.781 - 0.801 at the chosen learning rates, every seed


def test_a_report_merges_sweep_directories_of_one_study(tmp_path):
    """A study split over sittings by seeds: two sweep directories, one report over all seeds."""
    first = lr_sweep(tmp_path / "sitting1", seeds=range(0, 2))
    second = lr_sweep(tmp_path / "sitting2", seeds=range(2, 4))
    main([str(first), str(second), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    assert f"# Upsampling study: {first}, {second}" in text and "16 runs: 16 finished" in text
    assert "| nearest_conv | -0.02 | -0.02 | 4 |" in text  # four seeds paired
    with (tmp_path / "out" / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 16


def test_the_margin_flag_sets_the_margin_of_the_verdicts(tmp_path, capsys):
    root = write_sweep(tmp_path / "s", {"deconv": [0.80, 0.82, 0.85], "nearest_conv": [0.802, 0.823, 0.851]})
    main([str(root), "--out", str(tmp_path / "a")])
    assert "| nearest_conv | " in (text := (tmp_path / "a" / "report.md").read_text()) and "level within ±0.01" in text
    main([str(root), "--out", str(tmp_path / "b"), "--margin", "0.0001"])
    text = (tmp_path / "b" / "report.md").read_text()
    assert "not resolved" in text and "±0.0001" in text  # the same interval, read against a tiny margin
    with pytest.raises(SystemExit):
        main([str(root), "--margin", "-1"])
    assert "a positive Dice difference such as 0.01, not -1" in capsys.readouterr().err


def test_summary_corrects_over_every_comparison_it_holds(summary):
    """One family over the four comparisons of three sweeps, not one family per sweep."""
    deconv = {"a": [0.80, 0.82, 0.85], "b": [0.60, 0.62], "c": [0.50, 0.50]}
    rows = {
        ("synthetic (a)", "deconv_k3"): ([0.70, 0.75, 0.72], deconv["a"]),
        ("synthetic (a)", "nearest_conv"): ([0.81, 0.80, 0.86], deconv["a"]),
        ("isbi2012 / encoder_unet", "pixelshuffle"): ([0.61, 0.66], deconv["b"]),
        ("synthetic (c)", "bilinear_conv"): ([0.51, 0.55], deconv["c"]),  # seed 1 is NaN: seeds 0 and 2
    }
    p = [stats.ttest_rel(x, y).pvalue for x, y in rows.values()]
    for (dataset, mode), raw, adjusted in zip(rows, p, holm(p), strict=True):
        assert f"| {dataset} | {mode} | " in summary.text
        row = [line for line in summary.text.splitlines() if line.startswith(f"| {dataset} | {mode} | ")][1]
        assert f"| {fmt_p(raw)} | {fmt_p(adjusted)} |" in row
    assert "at 95% over all 4 comparisons of this summary" in summary.text
    assert "Resolved as worse or better by the simultaneous intervals: " in summary.text
    assert "### Seeds needed" in summary.text


def test_summary_gives_artifact_measures_as_median_and_range(summary):
    row = summary.rows[("synthetic (a)", "deconv_k3")]
    flat = [1e-3, 2e-3, 3e-3]  # fake_metrics: 1e-3 * (seed + 1)
    assert (
        float(row["val/flat_std median"]),
        float(row["val/flat_std min"]),
        float(row["val/flat_std max"]),
    ) == pytest.approx((2e-3, 1e-3, 3e-3))
    assert f"| {fmt_interval(np.median(flat), min(flat), max(flat))} |" in next(
        line for line in summary.text.splitlines() if line.startswith("| synthetic (a) | deconv_k3 | ")
    )


# ---- figures


def test_quality_figure_draws_points_with_intervals_from_three_seeds_within_the_axis():
    runs = dice_runs("deconv", [0.8, 0.82, 0.85]) + dice_runs("pair", [0.6, 0.9]) + dice_runs("wide", [0.5, 0.99, 0.98])
    (ax,) = quality_figure(runs, ("val/dice",)).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["deconv (n=3)", "pair (n=2)", "wide (n=3)"]
    assert not list(ax.patches)  # points, no bars
    bars = ax.containers  # one error bar per mode of 3 seeds or more; none for the pair
    segments = [c.lines[2][0].get_segments()[0] for c in bars]
    _, low, high = interval([0.8, 0.82, 0.85])
    assert len(bars) == 2 and [segments[0][0][1], segments[0][1][1]] == pytest.approx([low, high])
    assert segments[1][1][1] == 1.0  # the wide mode's interval, beyond 1, is drawn to 1
    bottom, top = ax.get_ylim()
    assert bottom <= 0.5 and top >= 1.0  # every dot and interval on the plot


def test_image_dice_and_the_prediction_panel_rank_by_dice(tmp_path):
    mask = np.zeros((40, 40), dtype=np.int64)
    mask[10:14, 10:14] = 1  # a small class
    all_background = np.zeros_like(mask)  # 1 % pixel error, misses the class: Dice (0.99 + 0) / 2
    fat = mask.copy()
    fat[8:16, 8:16] = 1  # 3 % pixel error, finds the class: Dice higher
    assert image_dice(all_background, mask) == pytest.approx((2 * 1584 / (1600 + 1584) + 0) / 2)
    assert image_dice(mask, mask) == 1.0
    ignored = mask.copy()
    ignored[0, :] = 255
    assert image_dice(mask, ignored) == 1.0  # ignore label left out
    runs = []
    for mode, pred in (("misses", all_background), ("finds", fat)):
        run_dir = tmp_path / mode
        run_dir.mkdir()
        np.savez(run_dir / "predictions.npz", images=mask[None, None].astype(float), masks=mask[None], preds=pred[None])
        runs.append(Run(run_dir, mode, 0, {}))
    fig = predictions_figure(runs, crop=8)
    titles = [ax.get_title() for ax in fig.axes[3::3]]
    assert titles == [
        f"finds: Dice {image_dice(fat, mask):.3f}",
        f"misses: Dice {image_dice(all_background, mask):.3f}",
    ]


def test_report_modules_import_each_other_without_a_cycle():
    """build -> across -> compare -> tables -> stats, runs: no module of report/ imports one that imports it back."""
    package = Path(__file__).parents[1] / "src" / "unet_upsampling" / "report"
    graph = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            node.module.rsplit(".", 1)[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unet_upsampling.report.")
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "unet_upsampling.report"
            for alias in node.names
        }
    assert "summary" not in graph and "across_figures" not in graph  # one home each: across.py, figures.py

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    assert [m for m in graph if reaches(m, m)] == []


def test_a_summary_of_studies_with_and_without_a_test_split_names_each_rows_outcome(tmp_path):
    held_out = lr_sweep(tmp_path / "held_out")
    validation_only = lr_sweep(tmp_path / "validation_only", with_test=False)
    main(["summary", str(held_out), str(validation_only), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| dataset | mode | Dice | Δ Dice vs deconv |" in text
    assert "| synthetic (held_out) | nearest_conv | " in text and "(test/dice) |" in text
    assert "| synthetic (validation_only) | nearest_conv | " in text and "(val/dice) |" in text
    assert "Outcome: `test/dice` and `val/dice` (in some studies no test split" in text
    with (tmp_path / "out" / "summary.csv").open() as f:
        rows = {(r["dataset"], r["mode"]): r for r in csv.DictReader(f)}
    chosen = rows[("synthetic (held_out)", "nearest_conv")]
    assert (chosen["lr"], chosen["outcome"]) == ("0.001", "test/dice")
    assert float(chosen["test/dice"]) == pytest.approx(np.mean([0.68, 0.69, 0.70]))


# ---- the catalogue's columns


def test_every_measure_a_run_holds_is_a_column_of_the_report(tmp_path):
    """A run holding every key the catalogue shows in the report: each is a column of one of the report's tables."""
    every = {key: 0.5 for _, keys in TABLES for key in keys}
    for seed in range(2):
        write_run(tmp_path / "sweep" / str(seed), "deconv", seed, every | {"val/dice": 0.8 + 0.01 * seed})
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    headers = [line for line in text.splitlines() if line.startswith("| mode | seeds |")]
    columns = [cell.strip() for line in headers for cell in line.strip("|").split("|")[2:]]
    assert sorted(columns) == sorted(every) and len(columns) == len(set(columns))
    assert "Left out, without a value" not in text


def test_the_summary_drops_a_column_no_study_has_and_says_so(summary):
    header = next(line for line in summary.text.splitlines() if line.startswith("| dataset | mode |"))
    assert "val/flat_std (median [range])" in header and "params" in header
    assert "val/nyquist_flips_pm" not in header  # no fake run measured it
    assert "Left out, without a value in any run" in summary.text and "`val/shift1_disagree_pm`" in summary.text


def test_the_cross_dataset_figure_plots_each_studys_reported_dice():
    groups = {m: runs_of(m, [{"val/dice": 0.1, "test/dice": 0.9, "val/flat_std": 0.01}] * 2) for m in ("a", "b")}
    fig = quality_vs_artifacts_across_figure(
        {"held out": (groups, "test/dice"), "val only": (groups, "val/dice")}, "val/flat_std"
    )
    held_out, val_only = fig.axes[:2]
    assert held_out.get_ylabel() == "test/dice" and val_only.get_ylabel() == "val/dice"
    assert {float(y) for c in held_out.collections for y in c.get_offsets()[:, 1]} == {0.9}
    assert {float(y) for c in val_only.collections for y in c.get_offsets()[:, 1]} == {0.1}


# ---- a report from results.csv, and the curves


@pytest.mark.slow
def test_a_report_from_its_results_csv_keeps_the_figures_that_need_run_directories(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", {"deconv": [0.80, 0.82, 0.85], "nearest_conv": [0.81, 0.80, 0.86]})
    main([str(sweep), "--out", str(tmp_path / "first")])
    published = tmp_path / "published"
    published.mkdir()
    (published / "results.csv").write_bytes((tmp_path / "first" / "results.csv").read_bytes())
    (published / "flat_fields.png").write_bytes((tmp_path / "first" / "flat_fields.png").read_bytes())
    main([str(published)])  # a folder holding a results.csv and no run directory
    text = (published / "report.md").read_text()
    first = (tmp_path / "first" / "report.md").read_text()
    tables = lambda md: md[md.index("## Findings") : md.index("## Figures")]  # noqa: E731
    assert tables(text) == tables(first)
    assert "Written from a report's results.csv, without the run directories." in text
    assert "`flat_fields.png` needs the run directories: it is not redrawn" in text and "![flat_fields.png]" in text
    assert re.search(
        r"Skipped, because they need the run directories .*: `curves.png`, `predictions.png`, `spectra.png`", text
    )
    assert not (published / "curves.png").exists() and is_real_png(published / "quality.png")
    main([str(published / "results.csv"), "--out", str(tmp_path / "copy")])  # the file itself: copied as written
    assert (tmp_path / "copy" / "results.csv").read_bytes() == (published / "results.csv").read_bytes()


def test_curves_read_each_runs_csv_once_per_step(tmp_path):
    run_dir = write_run(tmp_path / "0", "deconv", 0, {"val/dice": 0.6})
    (run_dir / "csv").mkdir()
    rows = ["step,train/loss,val/dice", "0,,0.2", "5,0.9,", "10,,0.5", "20,,0.6", "10,,0.5"]  # the best one again
    (run_dir / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    (run,) = collect_runs(tmp_path)
    steps, values = curve(run)
    assert steps.tolist() == [0, 10, 20] and values.tolist() == [0.2, 0.5, 0.6]
    other = write_run(tmp_path / "1", "deconv", 1, {"val/dice": 0.6})  # no csv/metrics.csv: no line
    assert curve(Run(other, "deconv", 1))[0].size == 0
    assert is_real_png(curves(collect_runs(tmp_path), tmp_path / "curves.png"))


# ---- the doubling rule


def doubling_csv(path: Path, steps: int, dice: dict[str, list[float]]) -> Path:
    """A results.csv as a report writes it: one ok row per mode and seed, with its max_steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*RUN_COLUMNS, "val/dice"])
        for mode, values in dice.items():
            for seed, value in enumerate(values):
                row = {"mode": mode, "seed": seed, "status": "ok", "run_dir": f"{mode}/{seed}", "max_steps": steps}
                writer.writerow([*(row.get(c, "") for c in RUN_COLUMNS), value])
    return path


def test_the_doubling_rule_pairs_seeds_and_calls_a_plateau_only_inside_the_tolerance(tmp_path):
    at_n = {"flat": [0.800, 0.810, 0.820], "rising": [0.70, 0.71, 0.72], "noisy": [0.80, 0.81, 0.82]}
    at_2n = {"flat": [0.801, 0.811, 0.8205], "rising": [0.73, 0.735, 0.75], "noisy": [0.79, 0.83, 0.82]}
    sweep_n = tmp_path / "n"  # N as run directories (their config's trainer.max_steps), 2N as a results.csv
    for job, (mode, values) in enumerate((m, v) for m, v in at_n.items()):
        for seed, value in enumerate(values):
            write_run(
                sweep_n / f"{job}_{seed}", mode, seed, {"val/dice": value}, config={"trainer": {"max_steps": 100}}
            )
    sweep_2n = doubling_csv(tmp_path / "2n" / "results.csv", 200, at_2n)
    main(["plateau", str(sweep_n), str(sweep_2n), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "plateau.md").read_text()
    rows = {r["mode"]: r for r in csv.DictReader((tmp_path / "out" / "plateau.csv").open())}
    for mode in at_n:
        gain = interval(np.subtract(at_2n[mode], at_n[mode]))
        assert [float(rows[mode][k]) for k in ("gain", "gain low", "gain high")] == pytest.approx(gain)
        assert (rows[mode]["N"], rows[mode]["2N"], rows[mode]["seeds"]) == ("100", "200", "3")
    assert [rows[m]["at plateau"] for m in at_n] == ["True", "False", "False"]
    assert "| flat | 3 | 100 |" in text and "**at plateau**: the interval lies within ±0.005" in text
    assert "**not at plateau**: 2N gains more than 0.005" in text
    assert "not resolved: the mean is within ±0.005, the interval reaches beyond" in text  # noisy: mean +0.0033
    assert "At plateau: 1 of 3 (flat)." in text
    main(["plateau", str(sweep_n), str(sweep_2n), "--out", str(tmp_path / "tight"), "--tolerance", "0.0001"])
    assert "At plateau: 0 of 3." in (tmp_path / "tight" / "plateau.md").read_text()  # flat gains 0.0005 to 0.001
    main(["plateau", str(sweep_n), str(sweep_2n), "--out", str(tmp_path / "one"), "--modes", "rising"])
    assert [r["mode"] for r in csv.DictReader((tmp_path / "one" / "plateau.csv").open())] == ["rising"]


def test_the_doubling_rule_says_when_the_steps_were_not_doubled_and_names_wrong_modes(tmp_path, capsys):
    sweep_n = doubling_csv(tmp_path / "n.csv", 100, {"deconv": [0.8, 0.81]})
    sweep_3n = doubling_csv(tmp_path / "3n.csv", 300, {"deconv": [0.8, 0.81]})
    main(["plateau", str(sweep_n), str(sweep_3n), "--out", str(tmp_path / "out")])
    assert "no rule: 300 steps are not twice 100" in (tmp_path / "out" / "plateau.md").read_text()
    with pytest.raises(SystemExit):
        main(["plateau", str(sweep_n), str(sweep_3n), "--out", str(tmp_path / "out"), "--modes", "pixelshuffle"])
    assert (
        "--modes names pixelshuffle, which the two sweeps do not both hold; they hold: deconv"
        in capsys.readouterr().err
    )
    for argv in (["plateau", str(sweep_n)], ["plateau", str(sweep_n), str(sweep_3n)]):
        with pytest.raises(SystemExit):
            main(argv)
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_results_csv_records_each_runs_max_steps(tmp_path):
    write_run(tmp_path / "sweep" / "0", "deconv", 0, {"val/dice": 0.8}, config={"trainer": {"max_steps": 400}})
    write_run(
        tmp_path / "sweep" / "1",
        "deconv",
        1,
        {"val/dice": 0.8, "global_step": 30},
        config={"trainer": {"max_steps": -1}},
    )
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert [r["max_steps"] for r in rows] == ["400", ""]
    runs, _ = runs_from_csv(tmp_path / "out" / "results.csv")
    assert [r.steps for r in runs] == [400, 30]  # unbounded by steps: the steps its metrics.json recorded


def test_a_kept_figure_names_the_commit_that_holds_it(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "flat_fields.png").write_bytes(b"png")
    subprocess.run([*git, "add", "flat_fields.png"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "figure"], check=True)
    commit = subprocess.run(
        [*git, "log", "-1", "--format=%h"], check=True, capture_output=True, text=True
    ).stdout.strip()
    kept, skipped = kept_figure_lines(["flat_fields.png", "spectra.png"], tmp_path)
    assert kept.startswith("`flat_fields.png` needs the run directories") and f"committed in {commit} (" in kept
    assert skipped.endswith("written from results.csv: `spectra.png`.")


def test_a_report_of_two_seeds_gives_no_interval_and_no_seed_count_and_warns_nothing(tmp_path):
    """Two seeds: t(0.975, 1) = 12.7 makes any interval useless (a Dice interval past 0 and 1) and an SD of two
    values a wild seed count; the report says so instead, and numpy, scipy and matplotlib stay silent."""
    import warnings

    root = write_sweep(tmp_path / "s", {"deconv": [0.80, 0.82], "nearest_conv": [0.79, 0.83]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(root, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| nearest_conv | 0 (no interval below 3 seeds) | 0 (no interval below 3 seeds) | 2 |" in text
    assert "too few seeds (n = 2 < 3)" in text and "over 2 paired seeds: too few for an interval" in text
    assert "| nearest_conv | n/a | n/a | n/a |" in text  # no seeds needed from an SD of two values
    assert "| deconv | 2 | 0.81 |" in text  # a mean, no interval


def test_the_flat_field_at_a_users_own_grey_levels_reaches_the_report(tmp_path):
    """callbacks.artifact_probe.grey_levels=[0.1,0.9] writes flat_std_grey10 and _grey90: the catalogue knows them
    (metrics.json's keys are all accounted for) and the report shows them beside the shipped levels' columns."""
    from test_measures import is_headline_or_detail

    root = tmp_path / "s"
    for job, (mode, seed) in enumerate([("deconv", 0), ("deconv", 1), ("deconv", 2)]):
        metrics = fake_metrics(mode, seed, 0.8) | {"val/flat_std_grey10": 0.01 * (seed + 1), "val/flat_pef_grey90": 0.5}
        write_run(root / str(job), mode, seed, metrics)
    assert is_headline_or_detail("val/flat_std_grey10") and is_headline_or_detail("init/flat_pef_grey90")
    write_report(root, tmp_path / "out")
    header = next(
        line for line in (tmp_path / "out" / "report.md").read_text().splitlines() if "val/flat_std_grey10" in line
    )
    assert "val/flat_pef_grey90" in header and "| deconv | 3 |" in (tmp_path / "out" / "report.md").read_text()
