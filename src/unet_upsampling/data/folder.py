"""Image/mask pairs from folders: ``images/`` and ``masks/`` matched by file stem."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from unet_upsampling.errors import ConfigError, DataError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}
# Pillow modes that hold values beyond 0..255 (16- and 32-bit integers, 32-bit floats).
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def read_image(path: Path, channels: int) -> np.ndarray:
    """HxWxC uint8 with C = 1 (greyscale) or 3 (RGB), whatever the file stores."""
    if channels not in (1, 3):
        raise DataError(f"data.in_channels must be 1 or 3, got {channels}")
    with Image.open(path) as image:
        array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    return array[..., None] if channels == 1 else array


def read_mask(path: Path) -> np.ndarray:
    """HxW integer array of the values stored in the file (palette indices for 'P' images)."""
    with Image.open(path) as mask:
        array = np.asarray(mask if mask.mode in ("L", "P", "I", "I;16") else mask.convert("L"))
    return array.astype(np.int64)


class MaskMapping:
    """Stored mask value -> class id; values not in ``values`` are an error naming file and fix.

    ``values=None`` means the file already stores class ids ``0..num_classes-1`` (and
    ``ignore_index``).
    """

    def __init__(self, num_classes: int, values: Mapping[int, int] | None = None, ignore_index: int = -100):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.values = {int(k): int(v) for k, v in values.items()} if values else None
        wrong = {k: v for k, v in (self.values or {}).items() if not (0 <= v < num_classes or v == ignore_index)}
        if wrong:
            raise ConfigError(
                f"data.source.mask_values maps {wrong} to classes that do not exist: with data.num_classes="
                f"{num_classes} the classes are 0..{num_classes - 1} (and data.ignore_index={ignore_index} for "
                f"pixels left out); map those values to one of them, or raise data.num_classes"
            )

    def __call__(self, mask: np.ndarray, source: object = "mask") -> np.ndarray:
        if self.values is None:
            valid = (mask >= 0) & (mask < self.num_classes) | (mask == self.ignore_index)
            if not valid.all():
                raise DataError(
                    f"{source}: values {sorted(np.unique(mask[~valid]).tolist())} are not class ids "
                    f"0..{self.num_classes - 1} (or ignore_index {self.ignore_index}); map stored values to "
                    f"classes with data.source.mask_values, e.g. data.source.mask_values='{{0:0,255:1}}' for "
                    f"0/255 masks"
                )
            return mask
        keys = np.array(list(self.values))
        known = np.isin(mask, keys)
        if not known.all():
            raise DataError(
                f"{source}: values {sorted(np.unique(mask[~known]).tolist())} are not in data.source.mask_values "
                f"{self.values}; add them (map to {self.ignore_index} to ignore them)"
            )
        lut = np.zeros(int(max(keys.max(), mask.max())) + 1, np.int64)
        lut[keys] = list(self.values.values())
        return lut[mask]


def image_files(folder: Path, key: str = "data.source.root") -> dict[str, Path]:
    """Image files in ``folder`` by stem; a missing folder, or two files of one stem (``a.png`` and ``a.tif``,
    of which one would be dropped), is a DataError naming ``key`` or the files."""
    if not folder.is_dir():
        raise DataError(f"{key}: {folder} is not a directory")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, []).append(path)
    clashes = [" and ".join(str(p) for p in paths) for paths in by_stem.values() if len(paths) > 1]
    if clashes:
        raise DataError(
            f"{len(clashes)} file name(s) in {folder} differ only in their extension, and files are known by their "
            f"name without it (a mask pairs with its image, a prediction is named after its input), so one of each "
            f"would be dropped: {'; '.join(clashes[:10])}{' ...' if len(clashes) > 10 else ''}. Rename or remove "
            f"one file of each."
        )
    return {stem: paths[0] for stem, paths in by_stem.items()}


def stored_channels(image: Image.Image) -> int:
    """Colour channels a file stores, alpha not counted: 1 for L/I/F/P-grey, 3 for RGB and palettes."""
    bands = [b for b in image.getbands() if b != "A"]
    return 3 if len(bands) >= 3 or image.mode == "P" else 1


def wide_values(image: Image.Image, path: Path) -> str | None:
    """A problem line for an image whose values do not fit 0..255 (16-bit, 32-bit, float), else None.

    Images are read as 8 bits (``read_image``): Pillow's conversion would clip every value above 255
    to 255. Such files are refused rather than rescaled, because no one factor is right for all of
    them (a 12-bit camera stores 0..4095 in 16 bits); the user chooses the scaling once, on disk.
    """
    if image.mode not in WIDE_MODES:
        return None
    values = np.asarray(image)
    if image.mode != "F" and values.min() >= 0 and values.max() <= 255:
        return None
    return (
        f"{path}: a {image.mode} image with values {values.min():g}..{values.max():g}; images are read as 8 bits "
        f"(0..255) and larger values would be clipped to 255: save it as 8-bit, scaled as it should be seen (e.g. "
        f"with numpy, (a - a.min()) * 255.0 / (a.max() - a.min()) as uint8)"
    )


def too_large(path: Path, error: Image.DecompressionBombError) -> str:
    """The problem line of a file beyond Pillow's pixel limit (``Image.MAX_IMAGE_PIXELS``: a guard against files
    that claim a huge image in a few bytes), with the ways on."""
    return (
        f"{path}: {error} Cut it into tiles on disk (training takes data.crop_size crops of its images anyway), or, "
        f"for files you trust, raise the limit: predict.py max_image_pixels=N (with tile_size=... to predict it in "
        f"tiles)"
    )


def inspect_image(path: Path) -> tuple[str | None, tuple[int, int], int]:
    """(problem or None, (height, width), stored channels) of one image file, decoding it whole."""
    try:
        with Image.open(path) as image:
            image.load()
            return wide_values(image, path), image.size[::-1], stored_channels(image)
    except Image.DecompressionBombError as error:
        return too_large(path, error), (0, 0), 0
    except (OSError, SyntaxError, ValueError) as error:
        return f"{path}: unreadable or truncated image ({error})", (0, 0), 0


def check_pair(
    image_path: Path, mask_path: Path, in_channels: int, mapping: MaskMapping, convert_channels: bool
) -> tuple[str | None, tuple[int, int]]:
    """What is wrong with a pair (unreadable or truncated file, sizes, channels, mask values) or None, and its size."""
    problem, size, channels = inspect_image(image_path)
    if problem:
        return problem, size
    try:
        mask = read_mask(mask_path)
    except Image.DecompressionBombError as error:
        return too_large(mask_path, error), size
    except (OSError, SyntaxError, ValueError) as error:
        return f"{mask_path}: unreadable or truncated mask ({error})", size
    if mask.shape != size:
        return (
            f"{image_path} is {size[0]}x{size[1]} but its mask {mask_path.name} is {mask.shape[0]}x{mask.shape[1]}",
            size,
        )
    if channels != in_channels and not convert_channels:
        return (
            f"{image_path} has {channels} channel(s) but data.in_channels={in_channels}: set "
            f"data.in_channels={channels}, or data.source.convert_channels=true to convert every image"
        ), size
    try:
        mapping(mask, mask_path)
    except DataError as error:
        return str(error), size
    return None, size


def paired_files(root: Path, image_dir: str, mask_dir: str) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) pairs matched by stem, and a problem line per file without a partner."""
    images, masks = image_files(root / image_dir), image_files(root / mask_dir)
    if not images:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root / image_dir}")
    problems = [f"{images[k]}: no mask {root / mask_dir / k}.*" for k in sorted(images.keys() - masks.keys())]
    problems += [f"{masks[k]}: no image {root / image_dir / k}.*" for k in sorted(masks.keys() - images.keys())]
    return [(images[k], masks[k]) for k in sorted(images.keys() & masks.keys())], problems


def listed(problems: Sequence[str], limit: int = 20) -> str:
    """Problems one per line, the first ``limit`` of them."""
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "  - " + "\n  - ".join(problems[:limit]) + more


Pair = tuple[Path, Path]


def usable_pairs(
    root: Path,
    image_dir: str,
    mask_dir: str,
    in_channels: int,
    mapping: MaskMapping,
    convert_channels: bool,
    on_bad_sample: str,
) -> list[tuple[Pair, tuple[int, int]]]:
    """Checks every file under ``root`` before training; bad pairs stop the run or, with skip, are listed and left out.

    Returns the good pairs with their image sizes.
    """
    if on_bad_sample not in ("error", "skip"):
        raise DataError(f"data.source.on_bad_sample={on_bad_sample!r}: choose error or skip")
    pairs, problems = paired_files(root, image_dir, mask_dir)
    checked = [(pair, *check_pair(*pair, in_channels, mapping, convert_channels)) for pair in pairs]
    problems += [problem for _, problem, _ in checked if problem]
    good = [(pair, size) for pair, problem, size in checked if problem is None]
    if problems and on_bad_sample == "error":
        fix = (
            "Fix or remove them, or set data.source.on_bad_sample=skip to train without them."
            if good
            else "No pair is usable as configured: apply the fix the messages name (it holds for every file)."
        )
        raise DataError(f"{len(problems)} bad sample(s) in {root}:\n{listed(problems)}\n{fix}")
    if problems:
        log.warning(
            "data.source.on_bad_sample=skip: left out %d sample(s) of %s:\n%s",
            len(problems),
            root,
            listed(problems, len(problems)),
        )
    if not good:
        raise DataError(f"no usable image/mask pairs in {root}")
    return good


class FolderSegmentation(Dataset):
    """Reads pairs lazily; returns (image HxWxC uint8, mask HxW int64 class ids).

    ``sizes`` holds each image's (height, width), read when the files were checked. ``cache`` keeps
    every pair once decoded (about 9 bytes per pixel and channel): training crops a few pixels out of
    each image, and decoding a 1024x1024 PNG pair costs more than a training step on its 64 px crop.
    """

    def __init__(
        self,
        checked: Sequence[tuple[Pair, tuple[int, int]]],
        in_channels: int,
        mapping: MaskMapping,
        cache: bool = False,
    ):
        self.pairs = [pair for pair, _ in checked]
        self.sizes = {pair[0]: size for pair, size in checked}
        self.in_channels, self.mapping = in_channels, mapping
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        image_path, mask_path = self.pairs[index]
        pair = read_image(image_path, self.in_channels), self.mapping(read_mask(mask_path), mask_path)
        if self.cache is not None:
            for array in pair:
                array.setflags(write=False)  # a transform that wrote in place would corrupt later epochs
            self.cache[index] = pair
        return pair


def flat_splits(
    root: Path,
    pairs: Sequence[tuple[Pair, tuple[int, int]]],
    val_fraction: float,
    split_seed: int,
    test_images: Sequence[str],
) -> dict[str, list[tuple[Pair, tuple[int, int]]]]:
    """train / val [/ test] lists of the checked pairs of one flat folder (see ``folder_splits``)."""
    stems = [image.stem for (image, _), _ in pairs]
    unknown = sorted(set(map(str, test_images)) - set(stems))
    if unknown:
        raise DataError(
            f"data.source.test_images names {unknown}, which are not among the usable images of {root} (by file "
            f"stem, e.g. {stems[0]!r} for {pairs[0][0][0].name}): fix the names or remove them from the list"
        )
    test = {stems.index(str(stem)) for stem in test_images}
    order = [i for i in np.random.default_rng(split_seed).permutation(len(pairs)) if i not in test]
    n_val = max(1, round(val_fraction * len(pairs)))
    if len(order) - n_val < 1:
        raise DataError(
            f"{root} has {len(pairs)} usable image(s), {len(test)} of them for testing: a train/val split of the "
            f"others needs at least 2; lower data.source.val_fraction or name fewer data.source.test_images"
        )
    splits = {"train": sorted(order[n_val:]), "val": sorted(order[:n_val]), "test": sorted(test)}
    return {name: [pairs[i] for i in indices] for name, indices in splits.items() if indices}


def folder_splits(
    root: str,
    num_classes: int,
    in_channels: int = 1,
    mask_values: Mapping[int, int] | None = None,
    ignore_index: int = -100,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    test_images: Sequence[str] = (),
    image_dir: str = "images",
    mask_dir: str = "masks",
    on_bad_sample: str = "error",
    convert_channels: bool = False,
    cache: bool = False,
) -> dict[str, Dataset]:
    """``root/{train,val[,test]}/{images,masks}`` when present, else a split of ``root/{images,masks}``.

    In the flat layout the images named (by file stem) in ``test_images`` are the test split, whole,
    and validation takes round(val_fraction * all pairs) of the others in a permutation seeded by
    ``split_seed`` (the order does not depend on ``test_images``, so naming test images leaves the
    validation images that are not named where they were); the rest train. Every pair is checked
    first (see ``usable_pairs``); ``cache`` keeps decoded pairs in memory.
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DataError(f"data.source.root={root} is not a directory")
    mapping = MaskMapping(num_classes, mask_values, ignore_index)

    def usable(folder: Path) -> list[tuple[Pair, tuple[int, int]]]:
        return usable_pairs(folder, image_dir, mask_dir, in_channels, mapping, convert_channels, on_bad_sample)

    if (root_path / "train").is_dir():
        names = [n for n in ("train", "val", "test") if (root_path / n).is_dir()]
        if "val" not in names:
            raise DataError(f"{root_path} has train/ but no val/: add val/ or use flat images/ and masks/")
        if test_images:
            raise DataError(
                f"data.source.test_images names test images, but {root_path} has train/ and val/ folders: put the "
                f"test images in {root_path / 'test'} instead, or set data.source.test_images=[]"
            )
        splits = {n: usable(root_path / n) for n in names}
    else:
        splits = flat_splits(root_path, usable(root_path), val_fraction, split_seed, test_images)
    return {name: FolderSegmentation(pairs, in_channels, mapping, cache) for name, pairs in splits.items()}
