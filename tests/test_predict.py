"""predict.py: its outputs (masks, probabilities, overlays), tiled inference, and the outputs it refuses."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from unet_upsampling.errors import ConfigError
from unet_upsampling.figures import overlay_legend
from unet_upsampling.models.unet import UNet
from unet_upsampling.models.upsample import NearestConv
from unet_upsampling.predict import check_tiling, class_colours, overlay, sliding_window, tile_starts

from conftest import grey_image, run_predict, tampered


def test_predict_writes_probabilities_and_overlays_beside_the_masks(checkpoint, tmp_path, monkeypatch, capsys):
    pixels = grey_image(tmp_path / "in" / "a.png", (45, 67))
    code = run_predict(
        checkpoint,
        tmp_path,
        monkeypatch,
        f"input={tmp_path / 'in'}",
        f"output={tmp_path / 'out'}",
        "save_probabilities=true",
        "save_overlay=true",
    )
    assert code == 0
    out = tmp_path / "out"
    assert f"wrote 1 mask to {out} (5 files)" in capsys.readouterr().out
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "a.png",
        "overlays/a.png",
        "overlays/legend.png",
        "probabilities/a_c0.png",
        "probabilities/a_c1.png",
    ]
    mask = np.asarray(Image.open(out / "a.png"))
    probabilities = np.stack([np.asarray(Image.open(out / "probabilities" / f"a_c{k}.png")) for k in (0, 1)])
    assert probabilities.dtype == np.uint16 and probabilities.shape == (2, 45, 67)
    assert np.abs(probabilities.astype(int).sum(0) - 65535).max() <= 1  # p * 65535, rounded, per class
    assert np.array_equal(probabilities.argmax(0), mask)
    shown = np.asarray(Image.open(out / "overlays" / "a.png"))
    assert shown.shape == (45, 67, 3)
    assert np.array_equal(shown[mask == 0], np.repeat(pixels[mask == 0][:, None], 3, axis=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no log folder


def test_the_overlay_blends_each_class_but_the_background_in_its_own_colour():
    pixels = np.full((2, 3, 1), 100, np.uint8)
    classes = np.array([[0, 1, 2], [2, 1, 0]])
    shown = overlay(pixels, classes, num_classes=3).astype(int)
    assert (shown[classes == 0] == 100).all()
    one, two = shown[0, 1], shown[0, 2]
    assert np.array_equal(shown[1, 1], one) and np.array_equal(shown[1, 0], two) and not np.array_equal(one, two)
    assert (np.abs(one - 100) > 10).any() and (np.abs(two - 100) > 10).any()


def test_the_overlays_legend_gives_each_class_its_overlay_colour_and_name():
    legend = overlay_legend(["background", "nucleus", "border"], class_colours(3)).legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["background: not coloured (the image)", "nucleus", "border"]
    coloured = [p.get_facecolor()[:3] for p in legend.get_patches()[1:]]
    blended = overlay(np.zeros((1, 2, 1), np.uint8), np.array([[1, 2]]), 3, alpha=1.0)[0] / 255
    assert np.allclose(coloured, blended, atol=1 / 255)


def test_tiles_start_every_stride_and_the_last_is_flush_with_the_end():
    assert tile_starts(100, 32, 0.25) == [0, 24, 48, 68]
    assert tile_starts(32, 32, 0.25) == [0]
    assert tile_starts(70, 32, 0.0) == [0, 32, 38]


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_tiling_a_pointwise_network_gives_the_whole_image_result(overlap):
    """A 1x1 convolution sees no context: the blend of its tiles must be its output on the whole image."""
    net = nn.Conv2d(3, 4, 1)
    image = torch.randn(1, 3, 70, 95)
    with torch.no_grad():
        assert torch.allclose(sliding_window(net, image, 32, overlap), net(image), atol=1e-5)


def test_tiled_unet_prediction_agrees_with_the_whole_image_prediction():
    """Tiles of a UNet (a 96x80 image in 40 px tiles) lose context only near their edges, which the Gaussian
    blend weighs little: the classes agree on more than 99 % of the pixels."""
    torch.manual_seed(0)
    net = UNet(functools.partial(NearestConv), in_channels=1, num_classes=3, depth=2, base_channels=4).eval()
    image = torch.randn(1, 1, 96, 80)
    with torch.no_grad():
        whole, tiled = net(image), sliding_window(net, image, 40, 0.25)
    assert tiled.shape == whole.shape
    assert (tiled.argmax(1) == whole.argmax(1)).float().mean() > 0.99
    assert (tiled.softmax(1) - whole.softmax(1)).abs().max() < 0.01


def test_predict_in_tiles_writes_what_the_whole_image_gives(checkpoint, tmp_path, monkeypatch):
    grey_image(tmp_path / "in" / "big.png", (100, 90))
    for name, tiles in (("whole", []), ("tiled", ["tile_size=40"])):
        args = [f"input={tmp_path / 'in'}", f"output={tmp_path / name}", "save_probabilities=true", *tiles]
        assert run_predict(checkpoint, tmp_path, monkeypatch, *args) == 0
    masks = [np.asarray(Image.open(tmp_path / name / "big.png")) for name in ("whole", "tiled")]
    assert masks[1].shape == (100, 90) and (masks[0] == masks[1]).mean() > 0.99
    p = [np.asarray(Image.open(tmp_path / n / "probabilities" / "big_c1.png")) / 65535 for n in ("whole", "tiled")]
    assert np.abs(p[0] - p[1]).max() < 0.02


@pytest.mark.parametrize(
    "tile_size, overlap, key",
    [(2, 0.25, "tile_size=2"), (None, 1.0, "tile_overlap=1.0"), (None, "abc", "tile_overlap='abc'")],
)
def test_bad_tiling_values_are_named(tile_size, overlap, key):
    with pytest.raises(ConfigError, match=key):
        check_tiling(tile_size, overlap, min_size=4)


def test_predict_refuses_an_output_inside_its_input(checkpoint, tmp_path, monkeypatch, capsys):
    grey_image(tmp_path / "in" / "a.png", (40, 40))
    code = run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'in' / 'm'}")
    err = capsys.readouterr().err
    assert code == 1 and "is the input folder" in err and "or inside it" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["a.png"]


@pytest.mark.parametrize(
    "output, message",
    [
        ("file.txt", "output={} is a file, not a folder"),
        ("file.txt/masks", "output={} cannot be created: {} is a file"),
    ],
)
def test_predict_refuses_an_output_that_is_or_lies_under_a_file(
    output, message, checkpoint, tmp_path, monkeypatch, capsys
):
    grey_image(tmp_path / "in" / "a.png", (40, 40))
    (tmp_path / "file.txt").write_text("keep me")
    code = run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / output}")
    err = capsys.readouterr().err
    assert code == 1 and message.format(tmp_path / output, tmp_path / "file.txt") in err and "Traceback" not in err
    assert (tmp_path / "file.txt").read_text() == "keep me"


def test_predict_refuses_two_images_with_one_name_naming_both(checkpoint, tmp_path, monkeypatch, capsys):
    grey_image(tmp_path / "in" / "a.png", (40, 40))
    grey_image(tmp_path / "in" / "a.tif", (40, 40), seed=1)
    grey_image(tmp_path / "in" / "b.png", (40, 40))
    code = run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    err = capsys.readouterr().err
    clash = f"{tmp_path / 'in' / 'a.png'} and {tmp_path / 'in' / 'a.tif'}"
    assert code == 1 and "differ only in their extension" in err and clash in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda data: data.update(scale=1e-4),
            "2 of 2 input image(s) cannot be predicted, nothing was written:\n"
            "  - {input}/a.png is 40x40, 0x0 after the checkpoint's data.scale=0.0001, smaller than 4 px",
        ),
        (
            lambda data: data.update(scale=float("inf")),
            "{ckpt}: its data.scale=inf is not a positive number",
        ),
        (
            lambda data: data["source"].update(mask_values={-1: 0, 7: 1}),
            "{ckpt}: its data.source.mask_values={{-1: 0, 7: 1}} is not a map of stored mask values (integers 0..65535",
        ),
        (
            lambda data: data["source"].update(mask_values={"0": "background"}),
            "{ckpt}: its data.source.mask_values={{'0': 'background'}} is not a map",
        ),
    ],
    ids=["scale 1e-4", "scale inf", "mask values -1 and 7", "mask values of strings"],
)
def test_predict_refuses_stored_data_settings_it_cannot_honour(
    edit, message, checkpoint, tmp_path, monkeypatch, capsys
):
    grey_image(tmp_path / "in" / "a.png", (40, 40))
    grey_image(tmp_path / "in" / "b.png", (40, 40))
    ckpt = tampered(checkpoint, tmp_path, lambda config: edit(config["data"]))
    code = run_predict(ckpt, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    err = capsys.readouterr().err
    assert code == 1 and message.format(input=tmp_path / "in", ckpt=ckpt) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_predict_reads_the_channels_its_network_takes_without_the_stored_data_setting(
    checkpoint, tmp_path, monkeypatch
):
    pixels = grey_image(tmp_path / "in" / "a.png", (40, 40))
    Image.fromarray(np.stack([pixels] * 3, -1)).save(tmp_path / "in" / "a.png")  # RGB, read as grey
    ckpt = tampered(checkpoint, tmp_path, lambda config: config["data"].pop("in_channels"))
    assert run_predict(ckpt, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}") == 0
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (40, 40)


def test_images_beyond_pillows_pixel_limit_are_listed_skipped_or_read_when_the_limit_is_raised(
    checkpoint, tmp_path, monkeypatch, capsys
):
    """Pillow's limit lowered to 2 x 1000 pixels stands for its 2 x 89 Mpx: a 48x48 image is beyond it, 40x40 not."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    grey_image(tmp_path / "in" / "big.png", (48, 48))
    grey_image(tmp_path / "in" / "small.png", (40, 40))
    args = [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"]
    assert run_predict(checkpoint, tmp_path, monkeypatch, *args) == 1
    err = capsys.readouterr().err
    assert "1 of 2 input image(s) cannot be predicted, nothing was written" in err and "Traceback" not in err
    assert f"{tmp_path / 'in' / 'big.png'}: Image size (2304 pixels) exceeds limit of 2000 pixels" in err
    assert "max_image_pixels=N" in err
    assert run_predict(checkpoint, tmp_path, monkeypatch, *args, "on_bad_input=skip") == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["small.png"]
    args[1] = f"output={tmp_path / 'raised'}"
    assert run_predict(checkpoint, tmp_path, monkeypatch, *args, "max_image_pixels=2000") == 0
    assert sorted(p.name for p in (tmp_path / "raised").iterdir()) == ["big.png", "small.png"]
