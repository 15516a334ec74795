"""The speed benchmark (scripts/bench/) on tiny sizes: every part's JSON, the study throughput against another
checkout, the timer train.py runs load, and no per-step host sync."""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_upsampling.builders import build_task, build_trainer

from conftest import ROOT, TINY, compose_config, run_app

sys.path.insert(0, str(ROOT / "scripts"))  # the benchmark is a tool beside the package: scripts/bench/

from bench import ceilings, cli, machine, report, runs, throughput, timing
from bench.inference import fuse_batchnorm

TINY_BENCH = shlex.split(
    "--modes pixelshuffle --size 32 --width 4 --batch-size 4 --steps 2 --warmup 1 --repeats 1 --gemm-size 128 "
    "--copy-mb 4 --train-epochs 2 --train-rounds 1 --pipeline-batches 4 --pipeline-rounds 1 --workers 0 1 "
    "--infer-size 64 --infer-rounds 2 --threads 1 data.source.size=48 data.source.train=16 data.source.val=4 "
    "data.source.test=4 data.min_batches_per_epoch=1"  # an epoch of 4 steps
)
SKIP_ALL = ["--skip", "train_py", "pipeline", "inference"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def run_tiny(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    cli.main([*TINY_BENCH, *extra, "--output", str(out)])
    return json.loads(out.read_text())


def check_lightning_part(lightning: dict) -> None:
    for side in ("plain", "train_py"):
        assert positive(lightning[side]["step_ms"]) and positive(lightning[side]["images_per_s"])
        assert positive(lightning[side]["epoch_s"])
    assert positive(lightning["train_py"]["startup_s"])
    assert positive(lightning["train_py"]["epoch_with_val_and_checkpoints_s"])
    assert positive(lightning["ratio_train_py_vs_plain_step"]) and positive(lightning["ratio_train_py_vs_plain_epoch"])
    assert lightning["train_py"]["host_syncs_per_step_median"] == 0


def check_training_part(report: dict) -> None:
    assert set(report["training"]) == {"pixelshuffle"}
    for mode, row in report["training"].items():
        assert row["monai_upsample"] == {"deconv": "deconv", "pixelshuffle": "pixelshuffle"}[mode]
        assert row["ours_layout"] == "channels_last"
        for variant in (
            "ours",
            "monai",
            "ours_contiguous",
            "ours_channels_last",
            "monai_contiguous",
            "monai_channels_last",
        ):
            assert positive(row[variant]["images_per_s"]) and positive(row[variant]["step_ms"])
            assert math.isfinite(row[variant]["peak_memory_mb"])
        assert row["ours"] == row["ours_channels_last"] and row["monai"] == row["monai_contiguous"]
        for ratio in (
            "ratio_ours_vs_monai",
            "ratio_ours_vs_monai_per_flop",
            "ratio_ours_vs_monai_contiguous",
            "ratio_ours_vs_monai_channels_last",
            "ratio_channels_last_vs_contiguous",
        ):
            assert positive(row[ratio]), ratio
        assert positive(row["train_gflops_per_image"]) and positive(row["monai_train_gflops_per_image"])
        # per FLOP = per image x (our FLOPs / MONAI's FLOPs)
        flops = row["train_gflops_per_image"] / row["monai_train_gflops_per_image"]
        assert row["ratio_ours_vs_monai_per_flop"] == pytest.approx(row["ratio_ours_vs_monai"] * flops)


def check_machine_limit(report: dict) -> None:
    """The machine's own GEMM and conv FLOP/s, and each network's achieved fraction of the conv figure."""
    limit = report["machine_limit"]
    assert positive(limit["gemm_flops_per_s"]) and positive(limit["conv_flops_per_s"])
    assert limit["conv_pass"] == "forward+backward"
    assert set(limit["kernels"]) == {"gemm", "conv_level4", "conv_level3"}  # depth 4: the two widest levels
    assert limit["kernels"]["gemm"]["size"] == 128
    assert limit["kernels"]["conv_level4"]["channels"] == 4 * 2**4 and limit["kernels"]["conv_level4"]["side"] == 2
    assert limit["conv_flops_per_s"] == max(
        limit["kernels"][k]["flops_per_s"]["median"] for k in limit["kernels"] if k != "gemm"
    )
    for row in report["training"].values():
        for side in ("", "monai_"):
            assert positive(row[f"{side}machine_conv_fraction"]) and positive(row[f"{side}train_gflop_per_s"])
        achieved = row["train_gflop_per_s"] * 1e9 / limit["conv_flops_per_s"]
        assert row["machine_conv_fraction"] == pytest.approx(achieved, rel=1e-6)  # one repeat: the same limit


def check_roofline(report: dict) -> None:
    """The device's ceilings (CPU here) and each mode's step under them."""
    c = report["machine_limit"]["ceilings"]
    assert c["device"] == "cpu" and c["matmul_size"] == 128 and c["copy_mb"] == 4
    assert set(c["matmul_flops_per_s"]) == {"bfloat16", "float32"}  # tf32 on CUDA only
    assert all(positive(v) for v in (*c["matmul_flops_per_s"].values(), c["copy_bytes_per_s"], c["launch_s"]))
    for row in report["training"].values():
        r = row["roofline"]
        assert r["precision"] == "float32" and r["bound"] in ceilings.BOUNDS and r["kernels"] is None
        assert r["launches"] == r["ops"] > 50  # a UNet step runs hundreds of operators
        assert r["step_s"] == pytest.approx(row["ours"]["step_ms"] / 1e3)
        assert r["flops"] == pytest.approx(row["train_gflops_per_image"] * 1e9 * report["settings"]["batch_size"])
        assert positive(r["bytes"]) and positive(r["achieved_flops_per_s"])


def check_throughput(throughput: dict) -> None:
    """Two train.py runs of 4 steps side by side with one thread each, projected to 10-step study runs."""
    assert throughput["measure"] == "study_runs_per_core_hour" and throughput["ratio_new_vs_old"] is None
    (row,) = throughput["sweeps"]["2"]["new"]
    assert (row["runs"], row["steps"], row["batch_size"], row["study_steps"]) == (2, 4, 4, 10)
    assert (row["torch_threads"], row["cores"]) == ([1, 1], 2)
    assert all(positive(row[k]) for k in ("wall_s", "step_ms", "startup_s", "images_per_s_together"))
    assert row["study_run_wall_s"] == pytest.approx(row["wall_s"] + 6 * row["step_ms"] / 1e3)
    assert row["study_runs_per_hour"] == pytest.approx(2 * 3600 / row["study_run_wall_s"])
    assert row["study_runs_per_core_hour"] == pytest.approx(row["study_runs_per_hour"] / 2)
    assert throughput["median"] == {"2": {"new": row["study_runs_per_core_hour"]}}


@pytest.mark.slow
def test_benchmark_json_has_every_field(tmp_path, capsys, one_thread):
    """Every part at a tiny size, train.py run included, and --throughput 2: one train.py sweep of two runs at once
    through the joblib launcher, projected to a study run (about a minute on 2 cores)."""
    pytest.importorskip("monai", reason="the benchmark's MONAI part needs the bench extra (in dev)")
    throughput = ["--throughput", "2", "--throughput-steps", "4", "--study-steps", "10"]
    # beside TINY_BENCH's overrides (argparse takes the positionals in one run); the test split and the experiments'
    # validations are the other throughput test's
    report = run_tiny(tmp_path, "validations=2", "validate_at_init=false", "test=false", *throughput)
    printed = capsys.readouterr().out
    assert "ours / MONAI" in printed and "train.py / plain" in printed and "data pipeline" in printed
    assert "per image (img/s ratio)" in printed and "per FLOP (FLOP/s ratio)" in printed
    assert "machine limit" in printed and "targets:" in printed
    assert report["machine"]["torch_threads"] == 1
    assert report["command"].startswith("python scripts/benchmark.py --modes pixelshuffle")

    assert {"cpu", "cpu_count", "torch_threads", "torch", "device", "monai"} <= report["machine"].keys()
    assert report["machine"]["device"] == "cpu"
    assert {"image_size", "batch_size", "base_channels", "depth", "steps", "warmup", "repeats"} <= report[
        "settings"
    ].keys()
    assert report["settings"]["pairing"] == "monai" and report["settings"]["repeats"] == 1
    check_training_part(report)
    check_machine_limit(report)
    check_roofline(report)
    assert "device ceilings (cpu)" in printed and "bound (its share of the step)" in printed
    check_lightning_part(report["lightning"])
    check_throughput(report["throughput"])

    pipeline = report["pipeline"]
    assert positive(pipeline["model_images_per_s"])
    for source in ("synthetic", "folder", "folder_cached"):
        assert set(pipeline[source]) == {"0", "1"} and all(positive(v) for v in pipeline[source].values())
        assert positive(pipeline[f"ratio_{source}_vs_model"])
    assert pipeline["ratio_pipeline_vs_model"] == pipeline["ratio_synthetic_vs_model"]

    inference = report["inference"]
    assert inference["image_size"] == 64
    assert set(inference["images_per_s"]) == {"contiguous", "fused_bn", "channels_last", "channels_last_fused_bn"}
    assert all(positive(v) for v in inference["images_per_s"].values())
    for ratio in (
        "ratio_fused_bn_vs_contiguous",
        "ratio_channels_last_vs_contiguous",
        "ratio_channels_last_fused_bn_vs_channels_last",
    ):
        assert positive(inference[ratio])

    assert set(report["targets"]) == {
        "ours_vs_monai_min",
        "ours_vs_monai_per_flop_min",
        "train_py_vs_plain",
        "pipeline_vs_model",
        "no_per_step_sync",
    }
    assert report["targets"]["no_per_step_sync"]["holds"] is True
    assert all(isinstance(t["holds"], bool) for t in report["targets"].values())
    assert set(report["part_seconds"]) == {"training", "train_py", "throughput", "pipeline", "inference"}


@pytest.mark.slow
def test_smp_is_the_peer_of_the_encoder_unet_and_repeats_report_the_spread(tmp_path, one_thread):
    """--pairing smp: our encoder UNet against segmentation_models_pytorch's Unet with the same encoder. --skip
    leaves parts out (null, their targets n/a); --repeats 2: each ratio per image and per FLOP as median [min-max]
    over the repeats, and targets say which claims hold in every repeat (of the modes smp has a peer for)."""
    out = tmp_path / "smp.json"
    options = shlex.split(
        "--pairing smp --modes nearest_conv bilinear_conv deconv --size 64 --batch-size 2 --steps 1 --warmup 1 "
        "--repeats 2 --gemm-size 128 --copy-mb 4 --no-variants --threads 1"
    )
    overrides = ["model.encoder=resnet18", "model.decoder_channels=[32,16,16,8,8]"]
    cli.main([*SKIP_ALL, *options, *overrides, "--output", str(out)])
    report = json.loads(out.read_text())
    assert report["settings"]["pairing"] == "smp" and report["settings"]["network"] == "EncoderUNet resnet18"
    rows = report["training"]
    assert rows["nearest_conv"]["smp_upsample"] == "nearest" and rows["bilinear_conv"]["smp_upsample"] == "bilinear"
    assert rows["deconv"]["ratio_ours_vs_smp"] is None  # smp has no transposed-convolution decoder

    assert report["lightning"] is None and report["pipeline"] is None and report["inference"] is None
    assert report["throughput"] is None  # --throughput not given
    row = rows["nearest_conv"]
    assert row["ours_contiguous"] is None and row["ratio_channels_last_vs_contiguous"] is None  # no layout variants
    assert report["targets"]["train_py_vs_plain"]["holds"] is None  # not measured, not failed
    assert report["settings"]["repeats"] == 2
    for name in ("ratio_ours_vs_smp", "ratio_ours_vs_smp_per_flop"):
        spread = row[f"{name}_spread"]
        assert len(spread["values"]) == 2 and all(positive(v) for v in spread["values"])
        assert spread["min"] == min(spread["values"]) and spread["max"] == max(spread["values"])
        assert spread["min"] <= spread["median"] == row[name] <= spread["max"]
    for kernel in report["machine_limit"]["kernels"].values():
        assert len(kernel["flops_per_s"]["values"]) == 2
    for name, field in (
        ("ours_vs_smp_min", "ratio_ours_vs_smp"),
        ("ours_vs_smp_per_flop_min", "ratio_ours_vs_smp_per_flop"),
    ):
        claim = report["targets"][name]
        lowest = min(r[f"{field}_spread"]["min"] for r in rows.values() if r[field] is not None)
        assert claim["value"] == min(r[field] for r in rows.values() if r[field] is not None)
        assert claim["min_over_repeats"] == lowest and claim["holds_every_repeat"] is (lowest >= 1.0)
        assert {*claim["modes_every_repeat"], *claim["modes_not_every_repeat"]} == {"nearest_conv", "bilinear_conv"}


@pytest.mark.slow
def test_smp_unet_trains_through_train_py_for_the_quality_comparison(tmp_path, monkeypatch):
    from conftest import read_metrics

    assert (
        run_app(
            "train.py",
            "model=encoder_unet",
            "model._target_=bench.peers.SmpUnet",
            "model.encoder=resnet18",
            "model.decoder_channels=[32,16,16,8,8]",
            "upsample=nearest_conv",
            *TINY[4:],
            "data.crop_size=64",
            "trainer.fast_dev_run=true",
            "test=false",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert {"val/dice", "val/flat_std"} <= read_metrics(tmp_path).keys()
    assert "network: SmpUnet" in (tmp_path / "train.log").read_text()


def test_script_entry_point_and_no_console_script():
    """The benchmark is scripts/benchmark.py (code in scripts/bench/), not part of the installed package."""
    assert not (ROOT / "src" / "unet_upsampling" / "benchmark.py").exists()
    assert "from bench.cli import main" in (ROOT / "scripts" / "benchmark.py").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "unet-benchmark" not in pyproject
    assert "monai>=1.3" in pyproject
    assert cli.parse_args([]).repeats == 3


def test_machine_limit_kernels_are_positive_and_finite(one_thread):
    """GEMM and conv FLOP/s of the machine, counted and timed as the benchmark does (tiny shapes)."""
    kernels = machine.limit_kernels(2, 4, 32, 2, "cpu", channels_last=True, bf16=False, gemm_size=64)
    assert set(kernels) == {"gemm", "conv_level2", "conv_level1"}
    assert kernels["gemm"].flops == 2 * 64**3 * kernels["gemm"].shape["repeats_per_call"]
    # one 3x3 conv C -> C at side S, batch B: 2 * 9 * C^2 * S^2 * B FLOPs forward, twice that backward
    conv = kernels["conv_level1"].shape
    assert kernels["conv_level1"].flops == 3 * 2 * 9 * 8**2 * 16**2 * 2 * conv["repeats_per_call"]
    seconds = timing.interleaved({("machine", k): v.run for k, v in kernels.items()}, 2, 1, "cpu")
    rates = machine.flops_per_s(kernels, seconds)
    assert all(positive(v) for v in rates.values())
    limit = machine.summarise(kernels, [rates])
    assert limit["conv_flops_per_s"] == machine.conv_limit(rates) and positive(limit["gemm_flops_per_s"])


def test_train_flops_count_the_forward_and_backward_of_one_image():
    """Two 3x3 convs C -> C at side S: forward F = 2 * 9 * C^2 * S^2 each; backward the weight gradients of both
    and the first one's output gradient (its input, the image, needs none): 5 F for one image of the batch."""
    net = torch.nn.Sequential(*(torch.nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(2)))
    assert timing.train_flops(net, torch.randn(3, 4, 8, 8)) == 5 * 2 * 9 * 4**2 * 8**2
    assert all(p.grad is None for p in net.parameters())


def test_no_host_sync_per_training_step(tmp_path, one_thread):
    """With the default callbacks (rich progress bar), only logging steps turn tensors into numbers."""
    cfg = compose_config(
        "train",
        [
            "model.depth=2",
            "model.base_channels=4",
            "data.crop_size=32",
            "data.batch_size=2",
            "data.source.train=16",
            "data.source.size=48",
            "data.source.val=2",
            "data.source.test=0",
            "data.min_batches_per_epoch=1",
            f"hydra.run.dir={tmp_path}",
            "trainer.log_every_n_steps=4",
        ],
    )
    timer = timing.StepTimer(str(tmp_path / "timing.json"))
    callbacks = [instantiate(c) for name, c in cfg.callbacks.items() if name != "prediction_figure"]
    trainer = build_trainer(cfg, [*callbacks, timer], [], max_epochs=1, enable_model_summary=False)
    trainer.fit(build_task(OmegaConf.to_container(cfg, resolve=True)), datamodule=instantiate(cfg.data))
    syncs = json.loads((tmp_path / "timing.json").read_text())["syncs_per_step"]
    assert len(syncs) == 8
    assert sum(s > 0 for s in syncs) <= 2, syncs  # at most the 2 logging steps of 8
    assert sorted(syncs)[len(syncs) // 2] == 0


def test_fuse_batchnorm_matches_eval_mode():
    cfg = compose_config("train", ["model.depth=2", "model.base_channels=4"])
    net = build_task(OmegaConf.to_container(cfg, resolve=True)).net
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(4, 1, 32, 32) * 3 + 1)
    net.eval()
    fused = fuse_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())  # stem, encoder and decoder
    assert isinstance(fused.decoder.stages[-1][1], torch.nn.Identity)
    x = torch.randn(2, 1, 41, 33)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched


def test_step_timer_is_a_hydra_callback(tmp_path):
    """The train.py runs load StepTimer by its scripts/ path (scripts/ on their PYTHONPATH)."""
    cfg = compose_config(
        "train",
        [
            f"hydra.run.dir={tmp_path}",
            "+callbacks.step_timer._target_=bench.timing.StepTimer",
            f"+callbacks.step_timer.path={tmp_path / 't.json'}",
        ],
    )
    assert isinstance(instantiate(cfg.callbacks.step_timer), timing.StepTimer)
    assert Path(instantiate(cfg.callbacks.step_timer).path) == tmp_path / "t.json"


def test_the_step_timer_s_clock_stops_during_validations(tmp_path, monkeypatch):
    """Steps of 1 s, a 5 s validation inside the first epoch and a 2 s one at its end: the batch ends on the
    training clock are 1, 2, 3, 4 s; no step holds a validation or an epoch's start; each epoch's train part
    leaves its validations out, its total keeps them. The validation before fitting is start-up."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    timer = timing.StepTimer(str(tmp_path / "t.json"), count_syncs=False)
    trainer = SimpleNamespace(log_every_n_steps=50, datamodule=SimpleNamespace(batch_size=4))

    def batch(start: float, end: float) -> None:
        clock[0] = start
        timer.on_train_batch_start(trainer, None, None, 0)
        clock[0] = end
        timer.on_train_batch_end(trainer, None, None, None, 0)

    timer.on_validation_start(trainer, None)
    timer.on_train_epoch_start(trainer, None)
    batch(0, 1)
    batch(1, 2)
    timer.on_validation_start(trainer, None)
    batch(7, 8)
    timer.on_validation_start(trainer, None)
    clock[0] = 10
    timer.on_train_epoch_end(trainer, None)
    timer.on_train_epoch_start(trainer, None)
    batch(10, 11)
    timer.on_train_epoch_end(trainer, None)
    timer.on_fit_end(trainer, None)
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["batch_end_s"] == [1, 2, 3, 4] and record["step_s"] == [1]
    assert record["epoch_s"] == [3, 1] and record["epoch_total_s"] == [10, 1]
    assert record["torch_threads"] == torch.get_num_threads()
    assert Path(record["package"]) == ROOT / "src" / "unet_upsampling"


def test_per_step_leaves_out_the_warm_up_and_needs_two_steps_after_it():
    # steps of 1 s after a 5 s second one: from the end of step 1 on, or of step 0 (with the 5 s step)
    assert timing.per_step([1, 6, 7, 8], 1) == 1
    assert timing.per_step([1, 6, 7, 8], 0) == pytest.approx(7 / 3)
    with pytest.raises(ValueError, match="at least 3"):
        timing.per_step([0.0, 1.0], 1)


def test_the_train_py_runs_get_a_checkout_s_src_this_timer_an_absolute_data_dir_and_threads(tmp_path, monkeypatch):
    """They start in their own directories: ``DATA_DIR=../shared/data`` (the dry run's) must still find the data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "../data")
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    env = runs.environment(tmp_path / "old", threads=2)
    assert env["DATA_DIR"] == str(tmp_path.parent / "data")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "old" / "src"), str(ROOT / "scripts"), "elsewhere"]
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    monkeypatch.delenv("DATA_DIR")
    assert "DATA_DIR" not in runs.environment()
    assert runs.environment()["PYTHONPATH"].startswith(str(ROOT / "src") + os.pathsep)


def test_a_packed_sweep_projects_study_runs_per_core_hour(tmp_path, monkeypatch):
    """Fake sweeps of 2 runs (1 s a step, 100 s wall) projected from 6 to 106 steps: a study run of 200 s, 36
    study runs per hour; the runs report 2 threads each (whatever they were asked for), so 4 cores and 9 per
    core-hour; on a GPU per hour alone. A run that imported another checkout's package is refused."""
    checkout = tmp_path / "old"
    launched = []

    def fake_run(command, cwd, env):
        launched.append((command, env))
        sweep = Path(next(o for o in command if o.startswith("hydra.sweep.dir=")).split("=", 1)[1])
        for seed in ("0", "1"):
            (sweep / seed).mkdir(parents=True)
            record = {
                "batch_end_s": [0, 1, 2, 3, 4, 5],
                "batch_size": 4,
                "startup_s": 3.0,
                "torch_threads": 2,
                "package": str(checkout / "src" / "unet_upsampling"),
            }
            (sweep / seed / "step_timer.json").write_text(json.dumps(record))
        return 100.0

    monkeypatch.setattr(runs, "run", fake_run)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = SimpleNamespace(modes=["deconv"], throughput_steps=6, study_steps=106, device="cpu", bf16=True)
    row = throughput.packed_run(args, ["experiment=upsample_study"], 2, checkout, tmp_path / "cpu")
    assert (row["step_ms"], row["study_run_wall_s"], row["study_runs_per_hour"]) == (1000, 200, 36)
    assert (row["cores"], row["study_runs_per_core_hour"], row["images_per_s_together"]) == (4, 9, 8)
    command, env = launched[0]
    assert command[1] == str(checkout / "train.py")  # the checkout's own entry point
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONPATH"].startswith(str(checkout / "src") + os.pathsep)
    assert {"seed=0,1", "hydra.sweeper.params=null", "hydra.launcher.n_jobs=2"} <= set(command)
    assert not any("SplitThreads" in o for o in command)  # on a CPU the runs take their threads from the environment
    args.device = "cuda"
    gpu = throughput.packed_run(args, [], 2, checkout, tmp_path / "gpu")
    assert (gpu["study_runs_per_hour"], gpu["cores"], gpu["study_runs_per_core_hour"]) == (36, None, None)
    assert any("SplitThreads" in o for o in launched[1][0]) and "OMP_NUM_THREADS" not in launched[1][1]
    with pytest.raises(RuntimeError, match="imported"):
        throughput.packed_run(args, [], 2, tmp_path / "new", tmp_path / "other")


def test_the_throughput_alternates_checkouts_round_by_round(tmp_path, monkeypatch):
    """Three rounds of N = 1 and 2 against another checkout: this one first in rounds 0 and 2, the other first in
    round 1; each side's median over its rounds, and new / old. A checkout without src/unet_upsampling is refused."""
    old = tmp_path / "old"
    (old / "src" / "unet_upsampling").mkdir(parents=True)
    per_round = {"new": [9.0, 6.0, 4.0], "old": [3.0, 2.0, 0.5]}  # medians 6 and 2, neither first, last nor mean
    calls = []

    def fake_packed_run(args, overrides, n, checkout, sweep_dir):
        side = "new" if checkout == runs.ROOT else "old"
        r = int(sweep_dir.parent.name.removeprefix("round"))
        calls.append((r, n, side))
        return {"study_runs_per_core_hour": n * per_round[side][r], "study_runs_per_hour": 0.0}

    monkeypatch.setattr(throughput, "packed_run", fake_packed_run)
    args = cli.parse_args(["--throughput", "1", "2", "--throughput-rounds", "3", "--checkout", str(old)])
    result = throughput.bench_throughput(args, [], tmp_path)
    assert calls == [
        *[(0, n, side) for n in (1, 2) for side in ("new", "old")],
        *[(1, n, side) for n in (1, 2) for side in ("old", "new")],
        *[(2, n, side) for n in (1, 2) for side in ("new", "old")],
    ]
    assert result["measure"] == "study_runs_per_core_hour"
    assert result["median"] == {"1": {"new": 6, "old": 2}, "2": {"new": 12, "old": 4}}
    assert result["ratio_new_vs_old"] == {"1": 3, "2": 3}
    assert result["checkouts"] == {"new": str(runs.ROOT), "old": str(old.resolve())}
    with pytest.raises(SystemExit):
        cli.parse_args(["--throughput", "1", "--checkout", str(tmp_path)])


@pytest.mark.slow
def test_the_throughput_alone_against_another_checkout(tmp_path, capsys, one_thread):
    """--skip training ... --throughput 1 --checkout DIR: a sweep from each checkout, the experiment's own grid cut
    to the seeds. DIR is this checkout's src/ through a link, so its runs report DIR's path (packed_run refuses
    any other). About 30 s on 2 cores."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "src").symlink_to(ROOT / "src")
    (old / "train.py").symlink_to(ROOT / "train.py")
    out = tmp_path / "throughput.json"
    options = ["--skip", "training", "train_py", "pipeline", "inference", "--throughput", "1", "--threads", "1"]
    options += ["--throughput-steps", "4", "--study-steps", "10", "--checkout", str(old), "--output", str(out)]
    cli.main([*options, "experiment=upsample_study", *TINY])
    report = json.loads(out.read_text())
    assert report["training"] is None and report["machine_limit"] is None and report["lightning"] is None
    tp = report["throughput"]
    assert tp["checkouts"] == {"new": str(ROOT), "old": str(old.resolve())}
    for side in ("new", "old"):
        (row,) = tp["sweeps"]["1"][side]
        assert (row["runs"], row["steps"], row["torch_threads"]) == (1, 4, [1])
        assert tp["median"]["1"][side] == row["study_runs_per_core_hour"] > 0
    assert tp["ratio_new_vs_old"]["1"] == pytest.approx(tp["median"]["1"]["new"] / tp["median"]["1"]["old"])
    printed = capsys.readouterr().out
    assert "median study runs per core-hour new" in printed and "new / old" in printed


def test_roofline_names_the_limit_that_binds():
    """Each limit's floor is the time it alone allows; the largest binds (numbers of an H200-like device)."""
    device = {"matmul_flops_per_s": {"bfloat16": 800e12}, "copy_bytes_per_s": 4e12, "launch_s": 5e-6}
    # a UNet step of the study: 8 GFLOP, 400 MB, 900 kernels in 15 ms -> 4.5 ms of launches, 0.1 ms of memory
    unet = ceilings.roofline(8e9, 4e8, 900, 0.015, device, "bfloat16")
    assert unet["bound"] == "launch" and unet["floor_s"]["launch"] == pytest.approx(4.5e-3)
    assert unet["bound_fraction"] == pytest.approx(0.3) and unet["compute_fraction"] == pytest.approx(
        8e9 / 0.015 / 800e12
    )
    assert unet["ridge_flops_per_byte"] == 200 and unet["intensity_flops_per_byte"] == 20
    big_copy = ceilings.roofline(1e9, 4e10, 10, 0.011, device, "bfloat16")
    assert big_copy["bound"] == "memory" and big_copy["memory_fraction"] == pytest.approx(4e10 / 0.011 / 4e12)
    gemm = ceilings.roofline(1.1e12, 4e8, 1, 0.0015, device, "bfloat16")
    assert gemm["bound"] == "compute" and gemm["achieved_flops_per_s"] == pytest.approx(1.1e12 / 0.0015)


def test_device_ceilings_and_a_step_profile_on_a_cpu(one_thread):
    """The ceilings take the device as an argument (here the CPU, tiny sizes); the profile counts ops and bytes."""
    c = ceilings.measure("cpu", matmul_size=64, copy_mb=1)
    assert set(c["matmul_flops_per_s"]) == {"bfloat16", "float32"}
    assert positive(c["copy_bytes_per_s"]) and 0 < c["launch_s"] < 1e-3
    conv = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 16, 16)
    profiled = ceilings.step_profile(lambda: conv(x), "cpu")
    assert profiled["kernels"] is None and profiled["ops"] >= 1
    assert profiled["bytes_read"] >= x.numel() * 4 + conv.weight.numel() * 4  # the conv reads input and weight
    lines = report.roofline_lines(
        {
            "machine_limit": {"ceilings": c},
            "training": {"deconv": {"roofline": ceilings.roofline(1e6, 1e5, 10, 1e-3, c, "float32")}},
        }
    )
    assert lines[1].startswith("device ceilings (cpu): 64^3 matrix product") and lines[-1].startswith(
        "| deconv | 1.00 |"
    )


@pytest.mark.slow
def test_the_gpu_session_script_parses_and_brings_back_one_tarball():
    """scripts/gpu_session.sh (run on the GPU machine) is valid bash and leaves no checkpoint in its tarball."""
    import subprocess

    script = ROOT / "scripts" / "gpu_session.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "--throughput 1 4 8" in text and "--exclude='*.ckpt'" in text and "gpu_session.tar.gz" in text
    assert "GPU_SESSION_DRY" in text  # the tiny CPU dry run


def test_host_share_times_both_sides_alternating_and_takes_the_median_ratio(monkeypatch, capsys):
    """Fake runs of 1 s (plain) and 1.5 s a step (train.py, a 10 s hiccup in its warm-up): 1000 and 1500 ms a step,
    ratio 1.5; train.py gets the run's length, one validation after the last step and each training-set size."""
    from bench import host_share

    calls = []

    def plain(args, overrides, epochs, max_steps):
        calls.append(("plain", overrides))
        return {"batch_end_s": [float(s) for s in range(max_steps)], "steps_per_epoch": 2}

    def train_py(args, overrides, workdir, index):
        calls.append(("train_py", overrides))
        return {"batch_end_s": [10.0 + 1.5 * s if s else 0.0 for s in range(args.steps)]}

    monkeypatch.setattr(host_share, "plain_loop", plain)
    monkeypatch.setattr(host_share, "train_py_run", train_py)
    rows = host_share.main(["--images", "16", "512", "--steps", "6", "--warmup-steps", "1", "--repeats", "3"])
    assert [(r["images"], r["plain_ms_median"], r["train_py_ms_median"], r["ratio_median"]) for r in rows] == [
        (16, 1000.0, 1500.0, 1.5),
        (512, 1000.0, 1500.0, 1.5),
    ]
    assert [side for side, _ in calls[:6]] == ["plain", "train_py", "train_py", "plain", "plain", "train_py"]
    assert all("data.source.train=16" in o for _, o in calls[:6]) and all(
        "data.source.train=512" in o for _, o in calls[6:]
    )
    assert {"trainer.max_steps=6", "validations=1"} <= set(calls[1][1])
    assert (
        "| 16 (2) | 1000.0 [1000.0, 1000.0, 1000.0] | 1500.0 [1500.0, 1500.0, 1500.0] | 1.50 [1.50, 1.50, 1.50] |"
        in (capsys.readouterr().out)
    )


def test_the_plain_loop_stops_at_max_steps_within_an_epoch(one_thread):
    from bench.host_share import TINY_NET
    from bench.lightning_loop import plain_loop

    args = SimpleNamespace(device="cpu", bf16=False)
    loop = plain_loop(args, [*TINY_NET, "data.source.train=16", "data.min_batches_per_epoch=1"], 3, max_steps=5)
    assert len(loop["batch_end_s"]) == 5 and loop["steps_per_epoch"] == 2
    assert len(loop["epoch_s"]) == 3 and loop["batch_end_s"] == sorted(loop["batch_end_s"])


def test_precision_times_fp32_and_bf16_steps_of_each_mode_interleaved(monkeypatch, capsys):
    """Each mode's two candidates are the task's training step without and with bf16 autocast, timed in the same
    rounds; the ratio is fp32's seconds over bf16's."""
    from bench import precision

    made, rounds = [], []
    real_step = precision.training_step

    def step(task, optimizer, device, bf16):
        made.append(bf16)
        return real_step(task, optimizer, device, bf16)

    def timed(calls, n, warmup, device):
        rounds.append((sorted(calls), n, warmup))
        for call in calls.values():
            call()  # each really trains a step
        return {"fp32": 0.2, "bf16": 0.8}

    monkeypatch.setattr(precision, "training_step", step)
    monkeypatch.setattr(precision, "interleaved", timed)
    rows = precision.main(["--modes", "deconv", "nearest_conv", "--rounds", "3", *TINY])
    assert made == [False, True, False, True]
    assert rounds == [(["bf16", "fp32"], 3, 1)] * 2
    assert [(r["mode"], r["fp32/bf16"]) for r in rows] == [("deconv", 0.25), ("nearest_conv", 0.25)]
    assert "| deconv | 0.200 | 0.800 | 0.25 |" in capsys.readouterr().out
