"""Synthetic data, the folder datamodule on both mask styles, and torchvision adapters on fake trees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from unet_upsampling.data.folder import image_files
from unet_upsampling.data.synthetic import render, synthetic_splits
from unet_upsampling.data.torchvision_sets import oxford_pet_splits, voc_splits
from unet_upsampling.errors import CheckpointError, ConfigError, DataError

from conftest import TINY, check_composed, compose_config, folder_datamodule, run_app, write_pair


def test_synthetic_is_deterministic_and_has_thin_structures():
    a, b = render(0, 3, 128, 2), render(0, 3, 128, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(render(1, 3, 128, 2)[0], a[0])
    image, mask = a
    assert image.shape == (128, 128, 1) and image.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert image.std() > 10  # texture and noise, not a flat background


def test_synthetic_multiclass_and_splits_disjoint():
    splits = synthetic_splits(train=4, val=2, test=2, size=64, num_classes=4)
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 2, "test": 2}
    assert set(np.unique(np.concatenate([m.ravel() for _, m in splits["train"]]))) == {0, 1, 2, 3}
    assert not np.array_equal(splits["train"][0][0], splits["val"][0][0])


def test_synthetic_datamodule_batches():
    dm = instantiate(compose_config("train", ["data.crop_size=64", "data.batch_size=4"]).data)
    image, mask = next(iter(dm.train_dataloader()))
    assert image.shape == (4, 1, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (4, 64, 64) and mask.dtype == torch.int64
    image, mask = next(iter(dm.val_dataloader()))
    assert image.shape[-2:] == (128, 128)  # validation sees full images
    assert dm.has_test


def test_folder_binary_255_masks_with_mapping(folder_binary_255):
    dm = folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}")
    images = [x for x, _ in dm.val_dataloader()]
    masks = [m for _, m in dm.val_dataloader()]
    assert len(images) == 1 and images[0].shape[1] == 1  # 20 % of 6 images, full size, one channel
    assert set(torch.unique(masks[0]).tolist()) == {0, 1}
    x, m = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 1, 32, 32) and m.max() <= 1


def test_data_scale_resizes_images_and_masks_before_cropping_and_for_evaluation(folder_binary_255):
    full = folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}")
    half = folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}", "data.scale=0.5")
    image, _ = next(iter(full.val_dataloader()))
    half_image, half_mask = next(iter(half.val_dataloader()))
    assert half_image.shape[-2:] == half_mask.shape[-2:] == tuple(round(n / 2) for n in image.shape[-2:])
    assert set(torch.unique(half_mask).tolist()) == {0, 1}  # nearest for masks: no values in between
    assert half_image.mean().item() == pytest.approx(image.mean().item(), abs=0.05)  # area mean: same brightness
    x, m = next(iter(half.train_dataloader()))
    assert x.shape == (2, 1, 32, 32) and m.shape == (2, 32, 32)  # crops of crop_size from the halved images
    with pytest.raises(Exception, match=r"data\.scale=0: give the factor"):  # a ConfigError, wrapped by Hydra
        folder_datamodule(folder_binary_255, "data.scale=0")


def test_a_cached_folder_reads_each_file_once_and_serves_what_the_disk_holds(folder_binary_255):
    fresh = folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}")
    cached = folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}", "data.source.cache=true")
    fresh.setup(), cached.setup()
    n = len(cached.raw["train"])
    for i in range(n):
        cached.raw["train"][i]
    for epoch in range(2):  # the augmentations run on the cached arrays and must leave them as they were
        cached.train_dataloader().sampler.set_epoch(epoch)
        assert sum(len(x) for x, _ in cached.train_dataloader()) == 4
    on_disk = [fresh.raw["train"][i] for i in range(n)]
    for path in folder_binary_255.rglob("*.png"):
        path.unlink()  # from here on, only the cache can serve the pairs
    for i, (image, mask) in enumerate(on_disk):
        cached_image, cached_mask = cached.raw["train"][i]
        assert np.array_equal(cached_image, image) and np.array_equal(cached_mask, mask)
        assert not cached_image.flags.writeable and not cached_mask.flags.writeable
    assert sum(len(x) for x, _ in cached.train_dataloader()) == 4
    with pytest.raises(FileNotFoundError):
        fresh.raw["train"][0]


def test_folder_255_without_mapping_names_file_and_fix(folder_binary_255):
    dm = folder_datamodule(folder_binary_255)
    with pytest.raises(
        ValueError, match=r"(?s)6 bad sample.*img_0\.png: values \[255\].*data.source.mask_values='\{0:0,255:1\}'"
    ):
        dm.setup()


def test_folder_class_id_masks_rgb_and_explicit_splits(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        for i in range(n):
            write_pair(tmp_path / split, f"{split}{i}", (45 + i, 67), rgb=True, mask_values=(0, 2), seed=i)
    dm = folder_datamodule(tmp_path, "data.num_classes=3", "data.in_channels=3")
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 3, "val": 2, "test": 1}
    image, mask = dm.splits["val"][1]
    assert image.shape == (3, 46, 67) and set(mask.unique().tolist()) == {0, 2}


def test_folder_ignore_value_is_mapped(tmp_path):
    write_pair(tmp_path, "a", (40, 40), rgb=False, mask_values=(0, 128), seed=0)
    write_pair(tmp_path, "b", (40, 40), rgb=False, mask_values=(0, 255), seed=1)
    dm = folder_datamodule(tmp_path, "data.source.mask_values={0:0,255:1,128:-100}", "data.batch_size=1")
    dm.setup()
    values = set().union(*(set(m.unique().tolist()) for _, m in (dm.splits["train"][0], dm.splits["val"][0])))
    assert values == {0, 1, -100}


def test_folder_unpaired_files_are_named(folder_binary_255):
    (folder_binary_255 / "masks" / "img_2.png").unlink()
    with pytest.raises(ValueError, match=r"(?s)images/img_2.png: no mask .*data.source.on_bad_sample=skip"):
        folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}").setup()


def test_mask_values_naming_a_class_beyond_num_classes_are_refused_naming_the_key(folder_binary_255):
    with pytest.raises(
        ConfigError,
        match=r"data\.source\.mask_values maps \{255: 2\} to classes that do not exist: with data\.num_classes=2 "
        r"the classes are 0\.\.1 \(and data\.ignore_index=-100",
    ):
        folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:2}").setup()
    folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:-100}").setup()  # the ignore index is fine


def test_images_with_values_beyond_8_bits_are_refused_naming_the_file(folder_binary_255):
    """16-bit values would be clipped at 255 by the 8-bit read; 16-bit files holding 0..255 lose nothing."""
    images = folder_binary_255 / "images"
    for name, top in (("img_0.png", 4000), ("img_1.png", 255)):
        grey = np.asarray(Image.open(images / name), np.float64)
        Image.fromarray((grey / grey.max() * top).astype(np.uint16)).save(images / name)
        assert Image.open(images / name).mode == "I;16"
    with pytest.raises(
        DataError,
        match=r"(?s)1 bad sample\(s\) in .*img_0\.png: a I;16 image with values \d+\.\.4000; .*save it as 8-bit",
    ):
        folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}").setup()


def test_two_images_of_one_name_are_refused_naming_both_files(folder_binary_255):
    images = folder_binary_255 / "images"
    Image.open(images / "img_3.png").save(images / "img_3.tif")
    with pytest.raises(DataError, match=r"1 file name\(s\) in .*images differ only in their extension") as error:
        folder_datamodule(folder_binary_255, "data.source.mask_values={0:0,255:1}").setup()
    assert f"{images / 'img_3.png'} and {images / 'img_3.tif'}" in str(error.value)
    with pytest.raises(DataError, match=r"differ only in their extension.*img_3\.png and .*img_3\.tif"):
        image_files(images, key="input")  # predict.py's inputs: one prediction would overwrite the other


SMALL_NET = ["model.depth=2", "model.base_channels=4"]


def test_synthetic_images_too_small_for_the_network_are_refused_before_training():
    with pytest.raises(
        DataError,
        match=r"8 validation/test image\(s\) are smaller than 128 px on a side, .*val: synthetic image 0 \(64x64\), "
        r".*Lower model\.depth, or use larger images .*raise data\.source\.size",
    ):
        check_composed(*TINY, "model.depth=7", "data.crop_size=128", "data.source.size=64")


def test_images_scaled_below_the_network_s_smallest_input_are_refused_naming_the_scale():
    with pytest.raises(
        DataError, match=r"smaller than 4 px on a side after data\.scale=0\.05, .*\(2x2\).*raise data\.scale"
    ):
        check_composed(*TINY, "data.scale=0.05")
    check_composed(*TINY, "data.scale=0.5")  # 24 px images: a depth-2 network takes them


def test_eval_batches_of_images_of_different_sizes_are_refused(folder_binary_255, tmp_path, monkeypatch, capsys):
    folder = [f"data.source.root={folder_binary_255}", "data.source.mask_values={0:0,255:1}", "data.crop_size=32"]
    check_composed(*SMALL_NET, "data=folder", *folder, "data.batch_size=2", "data.eval_batch_size=1")
    overrides = [*SMALL_NET, "data=folder", *folder, "data.batch_size=2", "data.eval_batch_size=2"]
    overrides.append("data.source.val_fraction=0.5")
    with pytest.raises(ConfigError, match=r"data\.eval_batch_size=2 but the val images have 3 different sizes"):
        check_composed(*overrides)
    code = run_app("train.py", *overrides, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and "set data.eval_batch_size=1" in err and "Traceback" not in err


def fake_pet_tree(root, n=2):
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    for split in ("trainval", "test"):
        lines = [f"Abyssinian_{split}{i} 1 1 1" for i in range(n)]
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for i in range(n):
            Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(base / "images" / f"Abyssinian_{split}{i}.jpg")
            trimap = np.full((20, 30), 2, np.uint8)
            trimap[5:15, 5:20], trimap[5, 5:20] = 1, 3
            Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"Abyssinian_{split}{i}.png")


def test_oxford_pet_adapter_on_fake_tree(tmp_path):
    fake_pet_tree(tmp_path)
    splits = oxford_pet_splits(str(tmp_path), ignore_index=255)
    image, mask = splits["train"][0]
    assert image.shape == (20, 30, 3) and set(np.unique(mask)) == {0, 1, 255}
    assert len(splits["val"]) == 2


def test_voc_adapter_on_fake_tree(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True)
    for split in ("train", "val"):
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"2007_{split}\n")
        Image.fromarray(np.full((17, 23, 3), 50, np.uint8)).save(base / "JPEGImages" / f"2007_{split}.jpg")
        mask = Image.fromarray(np.repeat(np.array([0, 15, 255], np.uint8), 8)[None, :23].repeat(17, 0), "P")
        mask.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])  # VOC masks are palette PNGs
        mask.save(base / "SegmentationClass" / f"2007_{split}.png")
    splits = voc_splits(str(tmp_path))
    image, mask = splits["val"][0]
    assert image.shape == (17, 23, 3) and set(np.unique(mask)) == {0, 15, 255}


def tiny_datamodule(*overrides: str):
    """TINY's data (8 training images, batches of 4: 2 a pass), with ``overrides`` after it."""
    return instantiate(compose_config("train", [*TINY, *overrides]).data)


def epoch_batches(loader, epoch: int) -> list:
    loader.sampler.set_epoch(epoch)  # as Lightning does at every epoch's start
    return list(loader)


def same_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, y) for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True)
    )


@pytest.mark.parametrize("images", [8, 10])
def test_an_epoch_is_whole_passes_each_the_data_one_pass_epochs_give(images):
    """data.min_batches_per_epoch=5 at 2 batches a pass: 3 passes an epoch, whose batches (order and augmentations)
    are those of three one-pass epochs; 10 images: each pass drops its incomplete batch, as a one-pass epoch does."""
    single = tiny_datamodule(f"data.source.train={images}").train_dataloader()
    passes = tiny_datamodule(f"data.source.train={images}", "data.min_batches_per_epoch=5").train_dataloader()
    assert (len(single), len(passes)) == (2, 6)
    one_pass = [batch for epoch in range(6) for batch in epoch_batches(single, epoch)]
    assert same_batches(epoch_batches(passes, 0) + epoch_batches(passes, 1), one_pass)


def test_a_run_resumes_mid_epoch_in_the_pass_it_stopped_in():
    """A checkpoint after 3 of an epoch's 6 batches (mid second pass): the resumed loader gives the other 3."""
    whole = tiny_datamodule("data.min_batches_per_epoch=5")
    loader = whole.train_dataloader()
    uninterrupted = epoch_batches(loader, 1)
    loader.sampler.set_epoch(1)
    for taken, _ in enumerate(loader, start=1):
        if taken == 3:
            break
    state = whole.state_dict()
    assert state == {"train_epoch": 1, "train_batches_taken": 3, "train_passes_per_epoch": 3}
    resumed = tiny_datamodule("data.min_batches_per_epoch=5")
    resumed.load_state_dict(state)
    assert same_batches(list(resumed.train_dataloader()), uninterrupted[3:])


def test_a_resumed_run_stores_its_position_counting_the_batches_it_skipped():
    """Resumed after 3 of an epoch's 6 batches, one more batch taken: the next checkpoint is at batch 4, so a second
    resume from it takes batches 5 and 6, the ones the uninterrupted run takes."""
    whole = tiny_datamodule("data.min_batches_per_epoch=5")
    uninterrupted = epoch_batches(whole.train_dataloader(), 1)
    resumed = tiny_datamodule("data.min_batches_per_epoch=5")
    resumed.load_state_dict({"train_epoch": 1, "train_batches_taken": 3, "train_passes_per_epoch": 3})
    next(iter(resumed.train_dataloader()))
    state = resumed.state_dict()
    assert state == {"train_epoch": 1, "train_batches_taken": 4, "train_passes_per_epoch": 3}
    again = tiny_datamodule("data.min_batches_per_epoch=5")
    again.load_state_dict(state)
    assert same_batches(list(again.train_dataloader()), uninterrupted[4:])


@pytest.mark.parametrize(
    "state, fix",
    [
        ({"train_epoch": 1, "train_batches_taken": 3, "train_passes_per_epoch": 3}, "data.min_batches_per_epoch=6"),
        ({"train_epoch": 1, "train_batches_taken": 1}, "data.min_batches_per_epoch=2"),  # before the passes: one
    ],
)
def test_resuming_with_other_passes_per_epoch_is_refused_naming_the_setting(state, fix):
    datamodule = tiny_datamodule("data.min_batches_per_epoch=9")  # 5 passes
    with pytest.raises(ConfigError, match=rf"this run's 5 \(data.min_batches_per_epoch=9.*e\.g\. {fix}\)"):
        datamodule.load_state_dict(state)
    with pytest.raises(CheckpointError, match="not three counts"):
        datamodule.load_state_dict(state | {"train_passes_per_epoch": 0})


def test_a_data_position_beyond_the_epoch_is_refused():
    """An epoch of the tiny data is 2 batches: a checkpoint cannot have taken 10**12 of them."""
    datamodule = tiny_datamodule()
    datamodule.load_state_dict({"train_epoch": 0, "train_batches_taken": 2, "train_passes_per_epoch": 1})
    with pytest.raises(
        CheckpointError, match=r"train_batches_taken=1000000000000, more than the 2 batches of an epoch"
    ):
        datamodule.load_state_dict({"train_epoch": 0, "train_batches_taken": 10**12, "train_passes_per_epoch": 1})
