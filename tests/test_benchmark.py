"""The speed benchmark (scripts/bench/) on a tiny size, the GPU settings (checked on CPU), no per-step host sync."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_upsampling.builders import build_task, build_trainer
from unet_upsampling.errors import ConfigError

from conftest import ROOT, TINY, compose_config, run_app

sys.path.insert(0, str(ROOT / "scripts"))  # the benchmark is a tool beside the package: scripts/bench/

from bench import ceilings, cli, lightning_loop, machine, report, timing
from bench.inference import fuse_batchnorm

TINY_BENCH = [
    "--modes",
    "pixelshuffle",
    "--size",
    "32",
    "--width",
    "4",
    "--batch-size",
    "4",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--repeats",
    "1",
    "--gemm-size",
    "128",
    "--copy-mb",
    "4",
    "--train-epochs",
    "2",
    "--train-rounds",
    "1",
    "--pipeline-batches",
    "4",
    "--pipeline-rounds",
    "1",
    "--workers",
    "0",
    "1",
    "--infer-size",
    "64",
    "--infer-rounds",
    "2",
    "--threads",
    "1",
    "data.source.size=48",
    "data.source.train=16",
    "data.source.val=4",
    "data.source.test=4",
    "data.min_batches_per_epoch=1",  # an epoch of 4 steps
]
SKIP_ALL = ["--skip", "train_py", "pipeline", "inference"]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread here and in train.py runs (conftest restores the setting afterwards): on a shared 2-core
    CPU, tiny ops spend most of their time in thread barriers."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    torch.set_num_threads(1)


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
        assert positive(row["forward_gflops_per_image"]) and positive(row["monai_train_gflops_per_image"])
        assert row["train_gflops_per_image"] > 2 * row["forward_gflops_per_image"]  # backward ~ 2x forward
        # per FLOP = per image x (our FLOPs / MONAI's FLOPs)
        flops = row["train_gflops_per_image"] / row["monai_train_gflops_per_image"]
        assert row["ratio_ours_vs_monai_per_flop"] == pytest.approx(row["ratio_ours_vs_monai"] * flops)
        assert row["gpu_peak_fraction"] is None  # CPU


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
    """Two train.py runs of 6 steps side by side, projected to 100-step study runs."""
    row = throughput["2"]
    assert (row["runs"], row["steps"], row["batch_size"], row["study_steps"]) == (2, 6, 4, 100)
    assert all(positive(row[k]) for k in ("wall_s", "step_ms", "startup_s", "images_per_s_together"))
    assert row["study_run_wall_s"] == pytest.approx(row["wall_s"] + 94 * row["step_ms"] / 1e3)
    assert row["study_runs_per_hour"] == pytest.approx(2 * 3600 / row["study_run_wall_s"])
    assert row["images_per_s_together"] == pytest.approx(2 * 4 / (row["step_ms"] / 1e3))


@pytest.mark.slow
def test_benchmark_json_has_every_field(tmp_path, capsys, one_thread):
    """Every part at a tiny size, train.py run included, and --throughput 2: one train.py sweep of two runs at once
    through the joblib launcher, projected to a study run (about a minute on 2 cores)."""
    pytest.importorskip("monai", reason="the benchmark's MONAI part needs the bench extra (in dev)")
    report = run_tiny(
        tmp_path,
        "validations=2",  # beside TINY_BENCH's overrides: argparse takes the positionals in one run
        "--throughput",
        "2",
        "--throughput-steps",
        "6",
        "--study-steps",
        "100",
    )
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
    assert positive(pipeline["generation_images_per_s"]) and positive(pipeline["model_images_per_s"])
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
def test_benchmark_skipped_parts_are_null(tmp_path, one_thread):
    report = run_tiny(tmp_path, *SKIP_ALL, "--no-variants")
    assert report["lightning"] is None and report["pipeline"] is None and report["inference"] is None
    assert report["throughput"] is None  # --throughput not given
    assert report["training"]["pixelshuffle"]["ours_contiguous"] is None  # no layout variants
    assert report["training"]["pixelshuffle"]["ratio_channels_last_vs_contiguous"] is None
    assert positive(report["training"]["pixelshuffle"]["ours"]["images_per_s"])
    assert report["targets"]["train_py_vs_plain"]["holds"] is None  # not measured, not failed


@pytest.mark.slow
def test_benchmark_repeats_report_the_spread(tmp_path, one_thread):
    """--repeats 2: each ratio per image and per FLOP as median [min-max] over the repeats; targets say which
    claims hold in every repeat."""
    pytest.importorskip("monai", reason="the benchmark's MONAI part needs the bench extra (in dev)")
    report = run_tiny(tmp_path, *SKIP_ALL, "--no-variants", "--repeats", "2")
    assert report["settings"]["repeats"] == 2
    row = report["training"]["pixelshuffle"]
    for name in ("ratio_ours_vs_monai", "ratio_ours_vs_monai_per_flop"):
        spread = row[f"{name}_spread"]
        assert len(spread["values"]) == 2 and all(positive(v) for v in spread["values"])
        assert spread["min"] == min(spread["values"]) and spread["max"] == max(spread["values"])
        assert spread["min"] <= spread["median"] == row[name] <= spread["max"]
    for kernel in report["machine_limit"]["kernels"].values():
        assert len(kernel["flops_per_s"]["values"]) == 2
    for name, field in (
        ("ours_vs_monai_min", "ratio_ours_vs_monai"),
        ("ours_vs_monai_per_flop_min", "ratio_ours_vs_monai_per_flop"),
    ):
        claim = report["targets"][name]
        assert claim["value"] == row[field] and claim["min_over_repeats"] == row[f"{field}_spread"]["min"]
        assert claim["holds_every_repeat"] is (claim["min_over_repeats"] >= 1.0)
        assert set(claim["modes_every_repeat"]) | set(claim["modes_not_every_repeat"]) == {"pixelshuffle"}


@pytest.mark.slow
def test_smp_is_the_peer_of_the_encoder_unet(tmp_path, one_thread):
    """--pairing smp: our encoder UNet against segmentation_models_pytorch's Unet with the same encoder."""
    out = tmp_path / "smp.json"
    cli.main(
        [
            "--pairing",
            "smp",
            "--modes",
            "nearest_conv",
            "bilinear_conv",
            "deconv",
            "--size",
            "64",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--gemm-size",
            "128",
            "--no-variants",
            *SKIP_ALL,
            "--threads",
            "1",
            "model.encoder=resnet18",
            "model.decoder_channels=[32,16,16,8,8]",
            "--output",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["settings"]["pairing"] == "smp" and report["settings"]["network"] == "EncoderUNet resnet18"
    rows = report["training"]
    assert rows["nearest_conv"]["smp_upsample"] == "nearest" and rows["bilinear_conv"]["smp_upsample"] == "bilinear"
    assert positive(rows["nearest_conv"]["ratio_ours_vs_smp"]) and positive(
        rows["nearest_conv"]["ratio_ours_vs_smp_per_flop"]
    )
    assert rows["deconv"]["ratio_ours_vs_smp"] is None  # smp has no transposed-convolution decoder


@pytest.mark.slow
def test_smp_unet_trains_through_train_py_for_the_quality_comparison(tmp_path, monkeypatch):
    from conftest import TINY, read_metrics, run_app

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


def test_gpu_trainer_config_composes():
    """trainer=gpu sets trainer keys only; channels_last is the model's default, pinning follows the device."""
    cfg = compose_config("train", ["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 1
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark is True
    default = compose_config("train")
    assert cfg.model == default.model and cfg.data == default.data  # no model.* or data.* from trainer=gpu
    assert cfg.model.channels_last is True and cfg.model.compile is False
    assert cfg.data.pin_memory is None  # null: pin when the trainer runs on a GPU
    assert cfg.trainer.max_epochs == default.trainer.max_epochs  # the default trainer underneath
    assert compose_config("train", ["trainer=gpu", "trainer.devices=2", "model.compile=true"]).trainer.devices == 2


def test_channels_last_and_compile_keep_checkpoints_and_outputs():
    def net(*overrides):
        cfg = compose_config("train", ["model.depth=2", "model.base_channels=4", *overrides])
        L.seed_everything(0)
        return build_task(OmegaConf.to_container(cfg, resolve=True)).net

    plain, nhwc = net("model.channels_last=false"), net()  # channels_last is the default
    assert nhwc.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.stem[0].weight.is_contiguous()
    assert plain.state_dict().keys() == nhwc.state_dict().keys()
    x = torch.randn(2, 1, 37, 45)
    torch.testing.assert_close(nhwc(x), plain(x), atol=1e-4, rtol=1e-4)
    compiled = net("model.compile=true")  # compiled lazily: building it must not need a compiler
    assert compiled._compiled_call_impl is not None
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(compiled.state_dict())


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


def tiny_task(*overrides: str):
    cfg = compose_config("train", ["model.depth=2", "model.base_channels=4", *overrides])
    L.seed_everything(0)
    return build_task(OmegaConf.to_container(cfg, resolve=True))


def test_compile_mode_reaches_torch_compile_and_a_wrong_one_is_named(monkeypatch):
    modes = []

    def recording_compile(fn, *args, mode=None, **kwargs):
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", recording_compile)  # nn.Module.compile calls torch.compile
    tiny_task("model.compile=true", "model.compile_mode=reduce-overhead")
    tiny_task("model.compile=true")
    tiny_task("model.compile_mode=reduce-overhead")  # compile=false: the mode alone compiles nothing
    assert modes == ["reduce-overhead", None]
    with pytest.raises(ConfigError, match=r"model.compile_mode='fastest': choose null or one of .*reduce-overhead"):
        tiny_task("model.compile=true", "model.compile_mode=fastest")


@pytest.mark.slow
def test_reduce_overhead_compile_trains_like_eager_on_a_cpu(one_thread):
    """mode=reduce-overhead compiles with inductor on a CPU too (CUDA graphs only on a GPU): same outputs and
    gradients as eager (about 23 s on 2 cores with a cold inductor cache: it compiles forward and backward)."""
    small = ["model.depth=1", "model.base_channels=2"]  # fewer kernels to compile
    eager = tiny_task(*small).net
    compiled = tiny_task(*small, "model.compile=true", "model.compile_mode=reduce-overhead").net
    x = torch.randn(2, 1, 32, 32)
    outputs = []
    for net in (eager, compiled):
        out = net(x)
        out.square().mean().backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled.head.weight.grad, eager.head.weight.grad, atol=1e-4, rtol=1e-4)


def test_fused_adamw_where_asked_and_the_same_update(one_thread):
    """task.fused_optimizer: null (the default) fuses on CUDA only; true fuses on a CPU too, with the same step."""
    assert compose_config("train", ["trainer=gpu"]).task.fused_optimizer is None  # on: trainer=gpu runs on CUDA
    x, steps = torch.randn(2, 1, 32, 32), {}
    for fused in ("null", "true"):
        task = tiny_task("task.scheduler=null", f"task.fused_optimizer={fused}")
        optimizer = task.configure_optimizers()
        assert optimizer.defaults["fused"] is (True if fused == "true" else None)
        task.net(x).square().mean().backward()
        optimizer.step()
        steps[fused] = task.net.head.weight.detach().clone()
    torch.testing.assert_close(steps["true"], steps["null"], atol=1e-6, rtol=1e-5)
    explicit = tiny_task("task.scheduler=null", "task.fused_optimizer=true", "+task.optimizer.fused=false")
    assert explicit.configure_optimizers().defaults["fused"] is False  # the optimiser's own argument wins
    with pytest.raises(ConfigError, match=r"task\.fused_optimizer=true: RMSprop has no fused implementation"):
        tiny_task("task.optimizer._target_=torch.optim.RMSprop", "task.fused_optimizer=true")


def test_steady_step_keeps_validations_and_needs_three_steps():
    from bench.throughput import steady_step

    # steps of 1 s with a 5 s validation after the 6th: the second half (ends 3..7) holds it
    ends = [0, 1, 2, 3, 4, 5, 11, 12]
    assert steady_step(ends) == pytest.approx((12 - 4) / 3)
    with pytest.raises(ValueError, match="at least 3"):
        steady_step([0.0, 1.0])


def test_a_packed_sweep_runs_one_run_per_seed_whatever_grid_its_experiment_sweeps(tmp_path, monkeypatch):
    """The study experiments sweep learning rates too; the throughput sweep must still be N runs, not 3N. The
    packed command runs here in this process, one job after the other (the basic launcher for joblib's)."""
    from bench.throughput import packed_command

    args = SimpleNamespace(modes=["deconv"], throughput_steps=3, device="cpu")
    command = packed_command(args, ["experiment=upsample_study", *TINY], runs=2, sweep_dir=tmp_path / "sweep")
    overrides = [o for o in command[command.index("unet_upsampling.train") + 1 :] if "launcher" not in o]
    assert run_app("train.py", *overrides, "validations=1", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    runs = sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/step_timer.json"))
    assert runs == ["0", "1"]


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


def test_the_train_py_runs_get_an_absolute_data_dir(tmp_path, monkeypatch):
    """They start in their own directories: ``DATA_DIR=../shared/data`` (the dry run's) must still find the data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "../data")
    assert lightning_loop.subprocess_env()["DATA_DIR"] == str(tmp_path.parent / "data")
    monkeypatch.delenv("DATA_DIR")
    assert "DATA_DIR" not in lightning_loop.subprocess_env()


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
