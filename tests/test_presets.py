"""The real-data presets on ../shared/data (skipped where it is absent): classes, channels, names."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate

from unet_upsampling.data.folder import folder_splits
from unet_upsampling.errors import DataError

from conftest import SHARED_DATA, compose_config, write_pair

# preset: images in (train, val, test); the test images are named in the preset's YAML
SPLIT_SIZES = {"isbi2012": (19, 6, 5), "dsb2018_nuclei": (65, 20, 15), "vnc_em": (12, 4, 4)}
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


def stems(dataset) -> list[str]:
    return [image.stem for image, _ in dataset.pairs]


def test_named_test_images_are_held_out_whole_and_the_split_is_fixed(tmp_path):
    for i in range(10):
        write_pair(tmp_path, f"img_{i}", (24, 24), rgb=False, mask_values=(0, 1), seed=i)
    before = folder_splits(str(tmp_path), num_classes=2, val_fraction=0.3)
    splits = folder_splits(str(tmp_path), num_classes=2, val_fraction=0.3, test_images=["img_3", "img_7"])
    names = {name: stems(ds) for name, ds in splits.items()}
    assert names["test"] == ["img_3", "img_7"]
    every = [stem for split in names.values() for stem in split]
    assert sorted(every) == sorted(f"img_{i}" for i in range(10))  # disjoint, nothing lost
    assert (len(names["train"]), len(names["val"])) == (5, 3)  # val: round(0.3 * 10) of the others
    # the validation images that were not named stay where they were; the same call gives the same split
    assert set(stems(before["val"])) - {"img_3", "img_7"} <= set(names["val"])
    again = folder_splits(str(tmp_path), num_classes=2, val_fraction=0.3, test_images=["img_3", "img_7"])
    assert {name: stems(ds) for name, ds in again.items()} == names
    assert "test" not in before


def test_unknown_test_images_and_test_images_beside_split_folders_are_refused(tmp_path):
    for i in range(4):
        write_pair(tmp_path / "flat", f"img_{i}", (24, 24), rgb=False, mask_values=(0, 1), seed=i)
        write_pair(tmp_path / "split" / ("train" if i < 2 else "val"), f"img_{i}", (24, 24), False, (0, 1), i)
    with pytest.raises(DataError, match=r"test_images names \['img_9'\], which are not among .* 'img_0' for img_0.png"):
        folder_splits(str(tmp_path / "flat"), num_classes=2, test_images=["img_1", "img_9"])
    with pytest.raises(DataError, match=r"needs at least 2; lower data\.source\.val_fraction or name fewer"):
        folder_splits(str(tmp_path / "flat"), num_classes=2, test_images=["img_0", "img_1", "img_2"])
    with pytest.raises(DataError, match=r"put the test images in .*test instead"):
        folder_splits(str(tmp_path / "split"), num_classes=2, test_images=["img_0"])


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_holds_out_its_named_test_images(preset, monkeypatch):
    folder = PRESETS[preset][0]
    if not (SHARED_DATA / folder).is_dir():
        pytest.skip(f"{SHARED_DATA / folder} is absent")
    monkeypatch.setenv("DATA_DIR", str(SHARED_DATA))
    data = compose_config("train", [f"data={preset}"]).data
    splits = instantiate(data.source)()
    names = {name: set(stems(ds)) for name, ds in splits.items()}
    assert tuple(len(names[n]) for n in ("train", "val", "test")) == SPLIT_SIZES[preset]
    assert names["test"] == set(data.source.test_images)
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    # the validation images are those of the split before the test images were named
    without = instantiate(data.source, test_images=[])()
    assert names["val"] == set(stems(without["val"]))
