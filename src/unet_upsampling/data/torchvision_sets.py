"""Adapters from torchvision's segmentation datasets to (image HxWxC uint8, mask HxW int64)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets


class PairsFromPIL(Dataset):
    """Wraps a dataset of (PIL image, PIL mask) pairs, mapping mask values through ``lut``."""

    def __init__(self, dataset: Dataset, lut: np.ndarray | None = None):
        self.dataset, self.lut = dataset, lut

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = self.dataset[index]
        mask = np.asarray(mask, dtype=np.int64)
        return np.asarray(image.convert("RGB")), mask if self.lut is None else self.lut[mask]


def oxford_pet_splits(root: str, download: bool = False, ignore_index: int = 255) -> dict[str, Dataset]:
    """OxfordIIITPet trimaps (1 pet, 2 background, 3 border) -> classes 1, 0 and ``ignore_index``.

    torchvision's trainval split is train, its test split is val.
    """
    lut = np.full(256, ignore_index, np.int64)
    lut[[1, 2]] = [1, 0]
    split = {"train": "trainval", "val": "test"}
    return {
        name: PairsFromPIL(datasets.OxfordIIITPet(root, split=s, target_types="segmentation", download=download), lut)
        for name, s in split.items()
    }


def voc_splits(root: str, year: str = "2012", download: bool = False) -> dict[str, Dataset]:
    """PASCAL VOC segmentation: 21 classes, 255 marks object borders (the ignore index)."""
    return {
        name: PairsFromPIL(datasets.VOCSegmentation(root, year=year, image_set=name, download=download))
        for name in ("train", "val")
    }
