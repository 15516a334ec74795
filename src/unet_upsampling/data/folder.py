"""Image/mask pairs from folders: ``images/`` and ``masks/`` matched by file stem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}


def read_image(path: Path, channels: int) -> np.ndarray:
    """HxWxC uint8 with C = 1 (greyscale) or 3 (RGB), whatever the file stores."""
    if channels not in (1, 3):
        raise ValueError(f"data.in_channels must be 1 or 3, got {channels}")
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

    def __call__(self, mask: np.ndarray, source: object = "mask") -> np.ndarray:
        if self.values is None:
            valid = (mask >= 0) & (mask < self.num_classes) | (mask == self.ignore_index)
            if not valid.all():
                raise ValueError(
                    f"{source}: values {sorted(np.unique(mask[~valid]).tolist())} are not class ids "
                    f"0..{self.num_classes - 1} (or ignore_index {self.ignore_index}); map stored values to "
                    f"classes with data.mask_values, e.g. data.mask_values='{{0:0,255:1}}' for 0/255 masks"
                )
            return mask
        keys = np.array(list(self.values))
        known = np.isin(mask, keys)
        if not known.all():
            raise ValueError(
                f"{source}: values {sorted(np.unique(mask[~known]).tolist())} are not in data.mask_values "
                f"{self.values}; add them (map to {self.ignore_index} to ignore them)"
            )
        lut = np.zeros(int(max(keys.max(), mask.max())) + 1, np.int64)
        lut[keys] = list(self.values.values())
        return lut[mask]


def image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory: data.root must hold images/ and masks/")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def paired_files(root: Path, image_dir: str = "images", mask_dir: str = "masks") -> list[tuple[Path, Path]]:
    """(image, mask) pairs matched by stem; unpaired files are an error."""
    images, masks = image_files(root / image_dir), image_files(root / mask_dir)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root / image_dir}")
    unpaired = sorted(images.keys() ^ masks.keys())
    if unpaired:
        raise FileNotFoundError(f"{root}: {len(unpaired)} files have no partner in {image_dir}/ and {mask_dir}/ "
                                f"(same stem expected): {', '.join(unpaired[:10])}")
    return [(images[k], masks[k]) for k in sorted(images)]


class FolderSegmentation(Dataset):
    """Reads pairs lazily; returns (image HxWxC uint8, mask HxW int64 class ids)."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], in_channels: int, mapping: MaskMapping):
        self.pairs, self.in_channels, self.mapping = list(pairs), in_channels, mapping

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_image(image_path, self.in_channels), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise ValueError(f"{image_path} is {image.shape[:2]} but its mask {mask_path} is {mask.shape}")
        return image, self.mapping(mask, mask_path)


def folder_splits(root: str, num_classes: int, in_channels: int = 1, mask_values: Mapping[int, int] | None = None,
                  ignore_index: int = -100, val_fraction: float = 0.2, split_seed: int = 0,
                  image_dir: str = "images", mask_dir: str = "masks") -> dict[str, Dataset]:
    """``root/{train,val[,test]}/{images,masks}`` when present, else a seeded split of ``root/{images,masks}``."""
    root_path = Path(root).expanduser()
    mapping = MaskMapping(num_classes, mask_values, ignore_index)
    if (root_path / "train").is_dir():
        names = [n for n in ("train", "val", "test") if (root_path / n).is_dir()]
        if "val" not in names:
            raise FileNotFoundError(f"{root_path} has train/ but no val/: add val/ or use flat images/ and masks/")
        splits = {n: paired_files(root_path / n, image_dir, mask_dir) for n in names}
    else:
        pairs = paired_files(root_path, image_dir, mask_dir)
        order = np.random.default_rng(split_seed).permutation(len(pairs))
        n_val = max(1, round(val_fraction * len(pairs)))
        if len(pairs) - n_val < 1:
            raise ValueError(f"{root_path} has {len(pairs)} image(s): need at least 2 for a train/val split")
        splits = {"train": [pairs[i] for i in sorted(order[n_val:])], "val": [pairs[i] for i in sorted(order[:n_val])]}
    return {name: FolderSegmentation(pairs, in_channels, mapping) for name, pairs in splits.items()}
