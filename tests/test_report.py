"""The report and the cross-dataset summary, from fake run directories with known numbers (no training)."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from scipy import stats

from unet_upsampling.report.build import findings, flat_at_init, fmt, fmt_interval, main, write_csv, write_report
from unet_upsampling.report.runs import Run, collect_runs, deduplicate
from unet_upsampling.report.summary import load_studies, resolvable_difference, write_summary


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
    deconv = fmt_interval(*interval([0.2, 0.82, 0.85]))  # sweep2's seed 0, not sweep1's
    assert f"| deconv | 3 | {deconv} |" in text
    nearest = fmt_interval(*interval([0.81, 0.86]))  # the NaN is not a value: 2 of the row's 3 seeds
    assert f"| nearest_conv | 3 | {nearest} (n=2) |" in text
    cost = fmt_interval(*interval([10.0, 11.0, 12.0]))
    assert f"| deconv | 3 | 1000 | n/a | {cost} |" in text  # params, trainable_params (not recorded), train_time_s
    paired = fmt_interval(*interval([0.81 - 0.2, 0.86 - 0.85]))
    assert f"| nearest_conv | {paired} (n=2) |" in text


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
        "lower, the interval excludes 0." in findings(groups)
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
        "excludes 0.",
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
    main(["--summary", str(a), str(b), str(c), "--out", str(out)])
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
        assert float(row[f"val/dice - deconv{suffix}"]) == pytest.approx(expected)
    assert row["val/dice - deconv n"] == "3" and row["seeds"] == "3" and float(row["params"]) == 1000
    assert summary.rows[("synthetic (a)", "deconv")]["val/dice - deconv n"] == "0"  # the reference itself
    dice, delta = fmt_interval(*interval([0.70, 0.75, 0.72])), fmt_interval(*difference)
    boundary = fmt_interval(*interval([0.50, 0.51, 0.52]))
    assert f"| synthetic (a) | deconv_k3 | {dice} | {delta} (n=3) | {boundary} |" in summary.text
    assert f"| synthetic (a) | deconv | {fmt_interval(*interval([0.80, 0.82, 0.85]))} | reference |" in summary.text


def test_summary_counts_the_seeds_behind_each_value_and_leaves_duplicates_out(summary):
    row = summary.rows[("synthetic (c)", "bilinear_conv")]  # seed 1's Dice is NaN
    counts = (row["seeds"], row["val/dice n"], row["val/boundary_f1 n"], row["val/dice - deconv n"])
    assert counts == ("3", "2", "3", "2")
    assert float(row["val/dice - deconv"]) == pytest.approx(np.mean([0.51 - 0.50, 0.55 - 0.50]))
    assert f"| synthetic (c) | bilinear_conv | {fmt_interval(*interval([0.51, 0.55]))} (n=2) |" in summary.text
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
    assert "### synthetic (a)\n\n| mode | background | cell |" in summary.text
    c0, c1 = fmt(np.mean([0.75, 0.80, 0.77])), fmt(np.mean([0.65, 0.70, 0.67]))
    assert f"| deconv_k3 | {c0} | {c1} |" in summary.text
    assert "### isbi2012 / encoder_unet\n\n| mode | c0 | c1 |" in summary.text  # no class names: c0, c1


def test_summary_figure_is_a_real_png(summary):
    assert is_real_png(summary.out / "quality_vs_artifacts.png")
    assert "![quality_vs_artifacts](quality_vs_artifacts.png)" in summary.text


@pytest.mark.parametrize("argv", [[], ["--summary", "a"], ["sweep", "--summary", "a", "--out", "o"]])
def test_cli_needs_one_sweep_or_a_summary_with_an_output(argv):
    with pytest.raises(SystemExit):
        main(argv)


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
        main(["--summary", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" not in err
    assert f"error: {tmp_path / 'results.csv'} is not a results.csv written by scripts/report.py" in err
    assert not (tmp_path / "out").exists()  # nothing written
