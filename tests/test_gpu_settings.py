"""The GPU settings, checked on a CPU: trainer=gpu, channels_last, torch.compile and its mode, fused AdamW."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from unet_upsampling.builders import build_task
from unet_upsampling.errors import ConfigError

from conftest import compose_config


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
