"""The speed benchmark on a tiny size, the GPU settings (checked on CPU), no per-step host sync."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_upsampling import benchmark
from unet_upsampling.checkpoint import build_module
from unet_upsampling.models.unet import fuse_batchnorm

from conftest import ROOT, compose_config

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
    "data.splits.size=48",
    "data.splits.train=16",
    "data.splits.val=4",
    "data.splits.test=4",
]


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread: on a shared 2-core CPU, tiny ops spend most of their time in thread barriers."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # restored afterwards; the benchmark sets it for train.py
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def run_tiny(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    benchmark.main([*TINY_BENCH, *extra, "--output", str(out)])
    return json.loads(out.read_text())


def check_lightning_part(lightning: dict) -> None:
    for side in ("plain", "train_py"):
        assert positive(lightning[side]["step_ms"]) and positive(lightning[side]["images_per_s"])
        assert positive(lightning[side]["epoch_s"])
    assert positive(lightning["train_py"]["startup_s"])
    assert positive(lightning["train_py"]["epoch_with_val_and_checkpoints_s"])
    assert positive(lightning["ratio_train_py_vs_plain_step"]) and positive(lightning["ratio_train_py_vs_plain_epoch"])
    assert lightning["train_py"]["host_syncs_per_step_median"] == 0


def test_benchmark_json_has_every_field(tmp_path, capsys, one_thread):
    """Every part at a tiny size, train.py run included (about 20 s)."""
    pytest.importorskip("monai", reason="the benchmark's MONAI part needs the bench extra (in dev)")
    report = run_tiny(tmp_path)
    printed = capsys.readouterr().out
    assert "ours / MONAI" in printed and "train.py / plain" in printed and "data pipeline" in printed
    assert "targets:" in printed
    assert report["machine"]["torch_threads"] == 1

    assert {"cpu", "cpu_count", "torch_threads", "torch", "device", "monai"} <= report["machine"].keys()
    assert report["machine"]["device"] == "cpu"
    assert {"image_size", "batch_size", "base_channels", "depth", "steps", "warmup"} <= report["settings"].keys()
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
            "ratio_ours_vs_monai_contiguous",
            "ratio_ours_vs_monai_channels_last",
            "ratio_channels_last_vs_contiguous",
        ):
            assert positive(row[ratio]), ratio
        assert positive(row["forward_gflops_per_image"]) and positive(row["monai_train_gflops_per_image"])
        assert row["train_gflops_per_image"] > 2 * row["forward_gflops_per_image"]  # backward ~ 2x forward
        assert row["gpu_peak_fraction"] is None  # CPU

    check_lightning_part(report["lightning"])

    pipeline = report["pipeline"]
    assert positive(pipeline["generation_images_per_s"]) and positive(pipeline["model_images_per_s"])
    for source in ("synthetic", "folder"):
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

    assert set(report["targets"]) == {"ours_vs_monai_min", "train_py_vs_plain", "pipeline_vs_model", "no_per_step_sync"}
    assert report["targets"]["no_per_step_sync"]["holds"] is True
    assert all(isinstance(t["holds"], bool) for t in report["targets"].values())
    assert set(report["part_seconds"]) == {"training", "train_py", "pipeline", "inference"}


def test_benchmark_skipped_parts_are_null(tmp_path, one_thread):
    report = run_tiny(tmp_path, "--skip", "train_py", "pipeline", "inference", "--no-variants")
    assert report["lightning"] is None and report["pipeline"] is None and report["inference"] is None
    assert report["training"]["pixelshuffle"]["ours_contiguous"] is None  # no layout variants
    assert positive(report["training"]["pixelshuffle"]["ours"]["images_per_s"])
    assert report["targets"]["train_py_vs_plain"]["holds"] is None  # not measured, not failed


def test_script_shim_and_console_script_exist():
    assert (ROOT / "scripts" / "benchmark.py").read_text().count("from unet_upsampling.benchmark import main")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'unet-benchmark = "unet_upsampling.benchmark:main"' in pyproject
    assert "monai>=1.3" in pyproject


def test_no_host_sync_per_training_step(tmp_path, one_thread):
    """With the default callbacks (rich progress bar), only logging steps turn tensors into numbers."""
    cfg = compose_config(
        "train",
        [
            "model.depth=2",
            "model.base_channels=4",
            "data.crop_size=32",
            "data.batch_size=2",
            "data.splits.train=16",
            "data.splits.size=48",
            "data.splits.val=2",
            "data.splits.test=0",
            f"hydra.run.dir={tmp_path}",
            "trainer.log_every_n_steps=4",
        ],
    )
    timer = benchmark.StepTimer(str(tmp_path / "timing.json"))
    callbacks = [instantiate(c) for name, c in cfg.callbacks.items() if name != "prediction_figure"]
    trainer = instantiate(
        cfg.trainer, max_epochs=1, callbacks=[*callbacks, timer], logger=False, enable_model_summary=False
    )
    trainer.fit(build_module(OmegaConf.to_container(cfg, resolve=True)), datamodule=instantiate(cfg.data))
    syncs = json.loads((tmp_path / "timing.json").read_text())["syncs_per_step"]
    assert len(syncs) == 8
    assert sum(s > 0 for s in syncs) <= 2, syncs  # at most the 2 logging steps of 8
    assert sorted(syncs)[len(syncs) // 2] == 0


def test_gpu_trainer_config_composes():
    cfg = compose_config("train", ["trainer=gpu"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 1
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.benchmark is True
    assert cfg.model.channels_last is True and cfg.model.compile is False
    assert cfg.data.pin_memory is True
    assert cfg.trainer.max_epochs == compose_config("train").trainer.max_epochs  # the default trainer underneath
    assert compose_config("train", ["trainer=gpu", "trainer.devices=2", "model.compile=true"]).trainer.devices == 2


def test_channels_last_and_compile_keep_checkpoints_and_outputs():
    def net(*overrides):
        cfg = compose_config("train", ["model.depth=2", "model.base_channels=4", *overrides])
        L.seed_everything(0)
        return build_module(OmegaConf.to_container(cfg, resolve=True)).net

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
    net = build_module(OmegaConf.to_container(cfg, resolve=True)).net
    net.train()
    for _ in range(3):  # non-trivial running statistics
        net(torch.randn(4, 1, 32, 32) * 3 + 1)
    net.eval()
    fused = fuse_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 1, 41, 33)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched


def test_step_timer_is_a_hydra_callback(tmp_path):
    cfg = compose_config(
        "train",
        [
            f"hydra.run.dir={tmp_path}",
            "+callbacks.step_timer._target_=unet_upsampling.benchmark.StepTimer",
            f"+callbacks.step_timer.path={tmp_path / 't.json'}",
        ],
    )
    assert isinstance(instantiate(cfg.callbacks.step_timer), benchmark.StepTimer)
    assert Path(instantiate(cfg.callbacks.step_timer).path) == tmp_path / "t.json"
