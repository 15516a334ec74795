"""The real-data presets on ../shared/data (skipped where it is absent): classes, channels, names."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from conftest import SHARED_DATA, compose_config

PRESETS = {
    # preset: (folder under DATA_DIR, classes, names)
    "isbi2012": ("isbi2012-membrane", 2, ["cell", "membrane"]),
    "dsb2018_nuclei": ("dsb2018_nuclei", 2, ["background", "nucleus"]),
    "vnc_em": ("vnc_em", 5, ["intracellular", "membrane", "glia/extracellular", "mitochondria", "synapse"]),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_its_class_names_and_a_root_under_data_dir(preset, monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/somewhere")
    folder, classes, names = PRESETS[preset]
    cfg = compose_config("train", [f"data={preset}"])
    assert cfg.data.source.root == f"/somewhere/{folder}"
    datamodule = instantiate(cfg.data)
    assert datamodule.num_classes == classes == cfg.model.num_classes and datamodule.class_names == names
    assert cfg.data.scale == (0.5 if preset == "vnc_em" else 1.0)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_reads_the_real_data(preset, monkeypatch):
    folder, classes, _ = PRESETS[preset]
    if not (SHARED_DATA / folder).is_dir():
        pytest.skip(f"{SHARED_DATA / folder} is absent")
    monkeypatch.setenv("DATA_DIR", str(SHARED_DATA))
    data = compose_config("train", [f"data={preset}", "data.crop_size=64", "data.batch_size=2"]).data
    datamodule = instantiate(data)
    datamodule.setup()
    image, _ = datamodule.splits["val"][0]
    assert image.shape[0] == 1  # greyscale; dsb2018's RGB files of grey content are converted
    stored = datamodule.raw["val"][0][0].shape[:2]
    assert image.shape[-2:] == tuple(round(n * data.scale) for n in stored)  # vnc_em: 1024 -> 512
    values = set(
        np.unique(
            np.concatenate(
                [datamodule.splits["val"][i][1].numpy().ravel() for i in range(len(datamodule.splits["val"]))]
            )
        ).tolist()
    )
    assert values <= set(range(classes)) and len(values) >= 2
    crops, masks = next(iter(datamodule.train_dataloader()))
    assert crops.shape == (2, 1, 64, 64) and masks.max() < classes


def test_dsb2018_grey_content_is_the_same_in_every_channel():
    """Converting RGB files of grey content to one channel loses nothing."""
    folder = SHARED_DATA / "dsb2018_nuclei" / "images"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    from PIL import Image

    for path in sorted(folder.iterdir())[:5]:
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert np.abs(rgb - rgb[..., :1]).max() <= 1, path
