"""One LightningDataModule for every source: a ``splits`` factory plus albumentations pipelines."""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) pairs: a permutation and seeds drawn from (seed, epoch) alone.

    Each epoch's order and augmentations are then a function of the run's seed and the epoch
    number, which Lightning passes to ``set_epoch``: a run resumed from an epoch-end checkpoint
    continues exactly as the uninterrupted run would have.
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(zip(rng.permutation(self.length).tolist(), rng.integers(0, 2**31, self.length).tolist()))


class Transformed(Dataset):
    """Applies an albumentations pipeline (ending in ToTensorV2) to (image, mask) pairs.

    A key may be ``(index, seed)``: the pipeline's randomness is then seeded for that sample.
    """

    def __init__(self, dataset: Dataset, transform: A.Compose):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if seed is not None:
            self.transform.set_random_seed(seed)
        image, mask = self.dataset[index]
        out = self.transform(image=image, mask=np.asarray(mask))
        return out["image"].float(), out["mask"].long()


class SegmentationDataModule(L.LightningDataModule):
    """``splits()`` returns {"train", "val"[, "test"]} datasets of (image HxWxC, mask HxW) arrays.

    Train batches are ``batch_size`` random crops of side ``crop_size``; val/test are full images,
    any size, in batches of ``eval_batch_size`` (keep 1 when image sizes differ). ``source`` holds
    the source's own settings (``root``, ``mask_values``, ...) that the ``splits`` config refers to.
    """

    def __init__(
        self,
        splits: Callable[[], dict[str, Dataset]],
        train_transform: A.Compose,
        eval_transform: A.Compose,
        num_classes: int,
        in_channels: int,
        crop_size: int,
        ignore_index: int = -100,
        batch_size: int = 8,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        **source: object,
    ):
        super().__init__()
        self.crop_size, self.seed, self.source = crop_size, seed, source
        self.make_splits, self.train_transform, self.eval_transform = splits, train_transform, eval_transform
        self.num_classes, self.in_channels, self.ignore_index = num_classes, in_channels, ignore_index
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.splits: dict[str, Dataset] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            raw = self.make_splits()
            self.splits = {
                name: Transformed(ds, self.train_transform if name == "train" else self.eval_transform)
                for name, ds in raw.items()
            }
            if len(self.splits["train"]) < self.batch_size:
                raise ValueError(
                    f"the train split has {len(self.splits['train'])} images, fewer than "
                    f"data.batch_size={self.batch_size}: lower data.batch_size or add images"
                )

    @property
    def has_test(self) -> bool:
        self.setup()
        return "test" in self.splits

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        sampler = EpochSampler(len(self.splits[split]), self.seed) if shuffle else None
        return DataLoader(
            self.splits[split],
            batch_size=batch_size,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
