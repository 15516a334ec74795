"""The UNet with a timm encoder: every mode at odd sizes, encoder families, pretrained weights, encoder training, the
probe."""

from __future__ import annotations

import functools

import lightning as L
import numpy as np
import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from unet_upsampling.builders import build_datamodule, build_task
from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.errors import ConfigError
from unet_upsampling.metrics import flat_field_response
from unet_upsampling.models import EncoderUNet
from unet_upsampling.models.upsample import NearestConv

from conftest import (
    TINY,
    UPSAMPLE_MODES,
    compose_config,
    grey_image,
    offline_timm,
    read_metrics,
    run_app,
    run_predict,
)

ENCODER = ["model=encoder_unet", "model.encoder=resnet18", "model.decoder_channels=[32,16,16,8,8]"]
DATA = [*TINY[4:], "data.crop_size=48"]


def net(mode: str = "nearest_conv", *overrides: str) -> EncoderUNet:
    return instantiate(compose_config("train", [*ENCODER, f"upsample={mode}", *overrides]).model)


def test_channels_last_keeps_the_encoder_unet_s_outputs_and_checkpoints():
    plain, nhwc = (
        net("nearest_conv", "model.channels_last=false").eval(),
        net("nearest_conv", "model.channels_last=true"),
    )
    nhwc.load_state_dict(plain.state_dict())  # strict: the same keys
    conv = nhwc.decoder.stages[0][0].weight  # 3x3: its layout shows
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.randn(1, 1, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(nhwc.eval()(x), plain(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_every_mode_gives_the_input_size_at_odd_sizes(mode):
    model = net(mode).eval()
    for size in [(33, 47), (97, 130)]:
        with torch.no_grad():
            out = model(torch.randn(2, 1, *size))
        assert out.shape == (2, 2, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize("encoder", ["resnet34", "resnet50", "convnext_atto", "regnetx_002", "efficientnet_b0"])
def test_every_encoder_family_gives_the_input_size_and_trains(encoder):
    """First features at stride 2 (ResNet, RegNet, EfficientNet) or 4 (ConvNeXt): the decoder reaches full size."""
    model = net("deconv_k3", f"model.encoder={encoder}")
    out = model(torch.randn(2, 1, 45, 70))
    assert out.shape == (2, 2, 45, 70)
    out.square().mean().backward()
    for part in (model.encoder, model.decoder, model.head):
        assert all(p.grad is not None for p in part.parameters())
        assert sum(p.grad.abs().sum() for p in part.parameters()) > 0


def test_resnets_keep_their_torchvision_parameter_counts():
    """timm's ResNets are torchvision's (other module names: act1 for relu, no fc in the features)."""
    for name in ("resnet18", "resnet34", "resnet50"):
        ours = net("nearest_conv", f"model.encoder={name}").encoder
        theirs = getattr(torchvision.models, name)()
        count = sum(p.numel() for n, p in theirs.named_parameters() if not n.startswith("fc"))
        assert sum(p.numel() for p in ours.parameters()) == count - theirs.conv1.weight[:, 1:].numel()


def test_an_encoder_the_decoder_cannot_follow_is_refused():
    with pytest.raises(ConfigError, match=r"strides \[2, 4, 8, 16, 32\], and model.decoder_channels has 4 widths"):
        build_task(compose_config("train", [*ENCODER, "model.decoder_channels=[32,16,16,8]"]))
    with pytest.raises(ConfigError, match=r"model.encoder='resnet_18' is not a timm model"):
        build_task(compose_config("train", [*ENCODER, "model.encoder=resnet_18"]))


def test_an_encoder_unet_checkpoint_from_before_timm_loads():
    """Its keys (torchvision's ResNet cut into stages encoder.0 .. encoder.4) are renamed: the same network."""
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18().eval()
    stages = {"conv1.": "0.0.", "bn1.": "0.1.", "layer1.": "1.1.", "layer2.": "2.", "layer3.": "3.", "layer4.": "4."}
    model = EncoderUNet(functools.partial(NearestConv), "resnet18", in_channels=3).eval()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    for key, value in theirs.state_dict().items():
        stage = next((s for s in stages if key.startswith(s)), None)
        if stage is not None:
            old["encoder." + stages[stage] + key.removeprefix(stage)] = value
    model.load_state_dict(old)  # strict: every key found
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(theirs.children())[:-2])(x)  # up to layer4
        torch.testing.assert_close(model.encoder(x)[-1], expected)


@pytest.fixture
def saved_imagenet_weights(monkeypatch):
    """timm's pretrained weights, answered with a state_dict this test made (timm's ``pretrained_cfg_overlay``
    state_dict source: no download here)."""
    torch.manual_seed(1)
    state = timm.create_model("resnet18").state_dict()
    create = timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        overlay = {"pretrained_cfg_overlay": {"state_dict": state}} if pretrained else {}
        return create(name, pretrained=pretrained, **kwargs, **overlay)

    monkeypatch.setattr(timm, "create_model", create_model)
    return state


def test_pretrained_weights_load_through_timm(saved_imagenet_weights):
    model = EncoderUNet(functools.partial(NearestConv), "resnet18", in_channels=3, pretrained=True)
    assert torch.equal(model.encoder.conv1.weight, saved_imagenet_weights["conv1.weight"])
    assert torch.equal(model.encoder.layer4[1].conv2.weight, saved_imagenet_weights["layer4.1.conv2.weight"])
    # the input is re-normalised from the data pipeline's (0.5, 0.25) to ImageNet's mean and std
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = torch.rand(1, 3, 1, 1)
    data_normalised = (x - 0.5) / 0.25
    torch.testing.assert_close(
        data_normalised * model.input_scale + model.input_shift, (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    )
    unpretrained = EncoderUNet(functools.partial(NearestConv), "resnet18", in_channels=3)
    assert torch.equal(unpretrained.input_scale, torch.ones(1, 3, 1, 1))


def test_a_grey_network_is_the_rgb_network_on_a_repeated_grey_image(saved_imagenet_weights):
    grey = EncoderUNet(functools.partial(NearestConv), "resnet18", in_channels=1, pretrained=True).eval()
    rgb = EncoderUNet(functools.partial(NearestConv), "resnet18", in_channels=3, pretrained=True).eval()
    torch.testing.assert_close(grey.encoder.conv1.weight, saved_imagenet_weights["conv1.weight"].sum(1, True))
    rgb.decoder.load_state_dict(grey.decoder.state_dict())  # the same decoder (adapting the conv drew random numbers)
    rgb.head.load_state_dict(grey.head.state_dict())
    # with the same (grey: the RGB means') normalisation on every channel, the outputs agree
    rgb.input_scale.copy_(grey.input_scale.expand_as(rgb.input_scale))
    rgb.input_shift.copy_(grey.input_shift.expand_as(rgb.input_shift))
    image = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(image), rgb(image.expand(1, 3, 64, 64)), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_checkpoint_rebuilds_without_downloading(tmp_path, monkeypatch, saved_imagenet_weights):
    assert (
        run_app(
            "train.py",
            *ENCODER,
            *DATA,
            "model.pretrained=true",
            "trainer.max_steps=2",
            "validations=1",
            "test=false",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    created = offline_timm(monkeypatch)
    task, config = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert isinstance(task.net, EncoderUNet) and config["model"]["pretrained"] is True and created == ["resnet18"]
    grey_image(tmp_path / "in" / "a.png", (50, 77))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}") == 0
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (50, 77)


def test_the_encoder_gets_its_own_learning_rate_in_both_groups_of_the_schedule():
    task = build_task(compose_config("train", [*ENCODER, "task.encoder_lr_scale=0.1"]))
    optimizer = task.optimizer_factory(task.parameter_groups())
    encoder, rest = optimizer.param_groups
    assert {id(p) for p in encoder["params"]} == {id(p) for p in task.net.encoder.parameters()}
    assert encoder["lr"] == pytest.approx(0.1 * rest["lr"]) and rest["lr"] == pytest.approx(0.003)
    schedule = task.scheduler_factory(optimizer, T_max=10)
    for _ in range(4):
        optimizer.step()
        schedule.step()
    assert encoder["lr"] == pytest.approx(0.1 * rest["lr"]) and rest["lr"] < 0.003


def test_encoder_settings_on_a_network_without_an_encoder_are_refused():
    with pytest.raises(ConfigError, match=r"task\.encoder_lr_scale=0\.1 .* use model=encoder_unet"):
        build_task(compose_config("train", ["task.encoder_lr_scale=0.1"]))


class Snapshots(L.Callback):
    def __init__(self):
        self.encoder, self.decoder = [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.encoder.append([p.detach().clone() for p in pl_module.net.encoder.parameters()])
        self.decoder.append([p.detach().clone() for p in pl_module.net.decoder.parameters()])


@pytest.mark.slow
def test_a_frozen_encoder_does_not_train_until_its_epochs_are_over():
    cfg = compose_config("train", [*ENCODER, *DATA, "task.freeze_encoder_epochs=1"])
    task, snapshots = build_task(OmegaConf.to_container(cfg, resolve=True)), Snapshots()
    before = [p.detach().clone() for p in task.net.encoder.parameters()]
    bn = task.net.encoder.bn1
    stats = bn.running_mean.clone()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[snapshots],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(task, datamodule=build_datamodule(cfg))
    frozen, thawed = snapshots.encoder
    assert all(torch.equal(a, b) for a, b in zip(before, frozen, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(frozen, thawed, strict=True))
    assert not torch.equal(bn.running_mean, stats)  # BatchNorm statistics move once thawed, not before
    decoder_start = snapshots.decoder[0]
    assert not all(torch.equal(a, b) for a, b in zip(decoder_start, snapshots.decoder[1], strict=True))


@pytest.mark.slow
def test_the_probe_interior_does_not_change_when_the_margin_grows():
    torch.manual_seed(0)
    model = net("deconv_k3").eval()
    margin = model.receptive_field()
    assert margin % 32 == 0 and margin > 10 * 2**5  # beyond the classic UNet's bound
    response = flat_field_response(model, 1, margin, value=1.0)
    assert response.std() > 1e-4
    torch.testing.assert_close(flat_field_response(model, 1, margin + 64, value=1.0), response, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_the_receptive_field_stays_inside_the_probe_margin():
    """On the real network (ReLUs and max-pooling as they are), no input pixel beyond the margin matters."""
    torch.manual_seed(0)
    model = net("deconv_k4").eval()
    margin = model.receptive_field()
    size = 2 * margin + 33
    x = torch.randn(1, 1, size, size, requires_grad=True)
    model(x)[0, :, size // 2, size // 2].sum().backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 0, as_tuple=True)
    assert 0 < max((rows - size // 2).abs().max(), (cols - size // 2).abs().max()) <= margin


@pytest.mark.slow
def test_the_study_runs_with_an_encoder_unet(tmp_path, monkeypatch):
    assert (
        run_app(
            "train.py",
            "-m",
            "experiment=upsample_study",
            *ENCODER,
            "upsample=deconv_k3",  # a transposed convolution: the probe has a pattern to find
            "task.optimizer.lr=0.003",  # one rate of the grid
            "seed=0",
            "trainer.fast_dev_run=true",
            "test=false",
            *DATA,
            f"hydra.sweep.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    metrics = read_metrics(tmp_path / "0")
    assert {"val/dice", "val/flat_std", "val/lpef2", "val/pef32"} <= metrics.keys()
    assert not [key for key in metrics if key.startswith("init/")]  # the study validates no initial weights


def test_a_3x3_head_keeps_odd_sizes_and_an_even_one_is_refused():
    model = net("nearest_conv", "model.head_kernel_size=3").eval()
    assert model.head.kernel_size == (3, 3)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 33, 47)).shape == (1, 2, 33, 47)
    with pytest.raises(ConfigError, match=r"model.head_kernel_size=2: use an odd size"):
        build_task(compose_config("train", [*ENCODER, "model.head_kernel_size=2"]))


def test_resize_only_blocks_and_a_3x3_head_give_segmentation_models_pytorchs_unet():
    """upsample.conv=false with model.head_kernel_size=3 is smp's Unet decoder: the same layers, so the same count."""
    like_smp = ["upsample=nearest_conv", "upsample.conv=false", "model.head_kernel_size=3"]
    ours = instantiate(compose_config("train", ["model=encoder_unet", "model.encoder=resnet18", *like_smp]).model)
    peer = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())
    with torch.no_grad():
        assert ours.eval()(torch.randn(1, 1, 33, 47)).shape == (1, 2, 33, 47)


def test_a_network_with_global_context_has_no_reach_to_measure():
    """Every output depending on every input (attention, a global mean) fills every canvas: no reach, not a loop."""
    from unet_upsampling.models.encoder_unet import _reach

    class GlobalMean(torch.nn.Module):
        def forward(self, x):
            return x + x.mean((2, 3), keepdim=True)

    local = torch.nn.Conv2d(1, 1, 5, padding=2)
    assert _reach(GlobalMean(), 1, 64) is None and _reach(local, 1, 64) == 2
