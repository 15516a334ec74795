"""One LightningDataModule for every source: a ``splits`` factory plus albumentations pipelines."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, Sampler

from unet_upsampling.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)
# Lightning looks for state_dict/load_state_dict on the train loader itself to tell whether a mid-epoch resume
# can be exact, but would not restore a loader's state once the LR schedule has asked for the number of steps
# (Lightning issue 20550); the datamodule restores the position instead (SegmentationDataModule.state_dict).
warnings.filterwarnings(
    "ignore", "You're resuming from a checkpoint that ended before the epoch ended", PossibleUserWarning
)


class EpochSampler(Sampler):
    """Yields (index, augmentation seed) pairs: ``passes`` passes over the data, each a permutation and seeds drawn
    from (seed, pass number) alone.

    Epoch ``e`` takes passes ``e * passes`` to ``e * passes + passes - 1``, so the data a run sees, pass after
    pass, is the same whatever the passes per epoch, and each epoch's order and augmentations are a function
    of the run's seed and the epoch number, which Lightning passes to ``set_epoch``. With several passes each
    pass is cut to whole batches of ``batch_size``: a batch never mixes two passes, as it never mixes two
    epochs (the loader drops the incomplete last batch). ``start`` skips that many pairs of epoch ``epoch``
    (once): a run resumed from a mid-epoch checkpoint takes the rest of the epoch, with the same
    augmentations, as the uninterrupted run would have.
    """

    def __init__(self, length: int, seed: int, epoch: int = 0, start: int = 0, passes: int = 1, batch_size: int = 1):
        self.length, self.seed, self.epoch, self.start, self.passes = length, seed, epoch, start, passes
        self.per_pass = length if passes == 1 else length // batch_size * batch_size

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def __len__(self) -> int:
        return self.passes * self.per_pass

    def __iter__(self):
        pairs = []
        for number in range(self.epoch * self.passes, (self.epoch + 1) * self.passes):
            rng = np.random.default_rng([self.seed, number])
            order, seeds = rng.permutation(self.length).tolist(), rng.integers(0, 2**31, self.length).tolist()
            pairs += list(zip(order, seeds, strict=True))[: self.per_pass]
        start, self.start = self.start, 0
        return iter(pairs[start:])


class TrainLoader(DataLoader):
    """A DataLoader that counts the batches of the current epoch it has handed out (``taken``), those its
    EpochSampler skipped included: the position a checkpoint records (``SegmentationDataModule.state_dict``)."""

    taken = 0

    def __iter__(self):
        start = self.sampler.start if isinstance(self.sampler, EpochSampler) else 0
        self.taken = start // self.batch_size
        for batch in super().__iter__():
            self.taken += 1
            yield batch


def pipeline(
    transforms: Sequence[A.BasicTransform], normalize: Mapping[str, float | Sequence[float]], scale: float = 1.0
) -> A.Compose:
    """A resize by ``scale`` (area for images, nearest for masks), ``transforms``, then (x / 255 - mean) / std,
    then a CxHxW tensor."""
    if not scale > 0:
        raise ConfigError(f"data.scale={scale}: give the factor images are resized by, e.g. 0.5 for half size")
    resize = [] if scale == 1 else [A.RandomScale((scale - 1, scale - 1), interpolation=cv2.INTER_AREA, p=1.0)]
    return A.Compose([*resize, *transforms, A.Normalize(**normalize, max_pixel_value=255.0), ToTensorV2()])


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
    """``source()`` returns {"train", "val"[, "test"]} datasets of (image HxWxC, mask HxW) arrays.

    Train batches are ``batch_size`` random crops of side ``crop_size`` (``train_transform`` makes
    them); a training epoch is the fewest whole passes over the training set that give at least
    ``min_batches_per_epoch`` batches (``passes_per_epoch``), so that a small training set does not pay
    an epoch's end (hooks, logging, the loader's restart) every few steps. Val/test are full images, any
    size, in batches of ``eval_batch_size`` (keep 1 when image sizes differ). Both pipelines start by
    resizing by ``scale`` (as prediction does) and end with ``normalize`` and the conversion to tensors.
    ``class_names`` label the classes in summaries and reports (``class_0``, ... when None).
    ``pin_memory=None`` pins host memory when the trainer runs on a GPU.
    """

    def __init__(
        self,
        source: Callable[[], dict[str, Dataset]],
        train_transform: Sequence[A.BasicTransform],
        eval_transform: Sequence[A.BasicTransform],
        num_classes: int,
        in_channels: int,
        crop_size: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = -100,
        batch_size: int = 8,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        seed: int = 0,
        min_batches_per_epoch: int = 64,
        normalize: Mapping[str, float | Sequence[float]] | None = None,
        scale: float = 1.0,
    ):
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(
                f"data.class_names has {len(class_names)} names but data.num_classes={num_classes}: give one name "
                f"per class, or data.class_names=null"
            )
        self.class_names = [str(n) for n in class_names] if class_names else [f"class_{i}" for i in range(num_classes)]
        self.crop_size, self.seed, self.scale = crop_size, seed, scale
        self.min_batches_per_epoch = min_batches_per_epoch
        self.normalize = dict(normalize or {"mean": 0.5, "std": 0.25})
        self.source = source
        self.train_transform = pipeline(train_transform, self.normalize, scale)
        self.eval_transform = pipeline(eval_transform, self.normalize, scale)
        self.num_classes, self.in_channels, self.ignore_index = num_classes, in_channels, ignore_index
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.splits: dict[str, Dataset] | None = None
        self.raw: dict[str, Dataset] | None = None
        self._train_loader: TrainLoader | None = None
        self._resume_position = (0, 0)  # (epoch, batches taken) the next train loader starts at

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.raw = self.source()
            self.splits = {
                name: Transformed(ds, self.train_transform if name == "train" else self.eval_transform)
                for name, ds in self.raw.items()
            }
            if len(self.splits["train"]) < self.batch_size:
                raise DataError(
                    f"the train split has {len(self.splits['train'])} images, fewer than "
                    f"data.batch_size={self.batch_size}: lower data.batch_size or add images"
                )

    def eval_sizes(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Per val/test split, each image's (height, width) as the network sees it, resized by ``scale`` as
        albumentations' RandomScale does (``int(side * scale)``); sources that do not know their sizes give none."""
        self.setup()
        return {
            name: {str(key): (int(h * self.scale), int(w * self.scale)) for key, (h, w) in dataset.sizes.items()}
            for name, dataset in self.raw.items()
            if name != "train" and hasattr(dataset, "sizes")
        }

    @property
    def has_test(self) -> bool:
        self.setup()
        return "test" in self.splits

    def _pin_memory(self) -> bool:
        if self.pin_memory is not None:
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _loader(self, split: str, batch_size: int, sampler: Sampler | None = None, cls=DataLoader) -> DataLoader:
        self.setup()
        return cls(
            self.splits[split],
            batch_size=batch_size,
            sampler=sampler,
            drop_last=sampler is not None,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            persistent_workers=self.num_workers > 0,
        )

    def passes_per_epoch(self) -> int:
        """ceil(min_batches_per_epoch / batches per pass), at least 1: whole passes over the training set."""
        self.setup()
        return max(1, math.ceil(self.min_batches_per_epoch / (len(self.splits["train"]) // self.batch_size)))

    def train_dataloader(self) -> TrainLoader:
        """Shuffled batches; the first one after ``load_state_dict`` continues where the checkpoint's epoch was."""
        self.setup()
        epoch, taken = self._resume_position
        self._resume_position = (0, 0)
        sampler = EpochSampler(
            len(self.splits["train"]), self.seed, passes=self.passes_per_epoch(), batch_size=self.batch_size
        )
        batches = len(sampler) // self.batch_size
        if taken >= batches:  # the checkpoint's epoch had ended: the next one starts afresh
            epoch, taken = epoch + 1, 0
        if taken:
            log.info("train data: epoch %d continues at batch %d of %d", epoch, taken, batches)
        sampler.epoch, sampler.start = epoch, taken * self.batch_size
        self._train_loader = self._loader("train", self.batch_size, sampler, TrainLoader)
        return self._train_loader

    def state_dict(self) -> dict[str, int]:
        """Where training is in its data: the epoch of the train loader, the batches of it taken so far, and the
        passes over the training set an epoch makes (the epoch and batch counts mean nothing with another)."""
        loader = self._train_loader
        if loader is None or not isinstance(loader.sampler, EpochSampler):
            return {}
        return {
            "train_epoch": loader.sampler.epoch,
            "train_batches_taken": loader.taken,
            "train_passes_per_epoch": loader.sampler.passes,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """From a checkpoint (data, refused unless plain counts): where the next train loader starts. A checkpoint
        whose epochs are another number of passes is refused (its epoch and batch counts would point elsewhere in
        the data); one from before the passes were stored made one pass an epoch."""
        keys = ("train_epoch", "train_batches_taken", "train_passes_per_epoch")
        epoch, taken, passes = (state_dict.get(key, 1 if key == keys[2] else None) for key in keys)
        if not all(type(value) is int and value >= 0 for value in (epoch, taken, passes)) or passes < 1:
            raise CheckpointError(
                f"the checkpoint's data position ({type(self).__name__} entry) {state_dict!r} is not three counts "
                f"({', '.join(keys)}): it was not written by this project's train.py, or was altered"
            )
        if passes != self.passes_per_epoch():
            per_pass = len(self.splits["train"]) // self.batch_size
            raise ConfigError(
                f"the checkpoint's training epochs are {passes} pass(es) over the training set, this run's "
                f"{self.passes_per_epoch()} (data.min_batches_per_epoch={self.min_batches_per_epoch}, {per_pass} "
                f"batches a pass): resume with the checkpoint's data.min_batches_per_epoch (any value from "
                f"{(passes - 1) * per_pass + 1} to {passes * per_pass} here, e.g. "
                f"data.min_batches_per_epoch={passes * per_pass}), or train afresh without ckpt_path"
            )
        batches = self.passes_per_epoch() * (len(self.splits["train"]) // self.batch_size)
        if taken > batches:
            raise CheckpointError(
                f"the checkpoint's data position ({type(self).__name__} entry) has train_batches_taken={taken}, "
                f"more than the {batches} batches of an epoch: it was not written by this project's train.py, or "
                f"was altered"
            )
        self._resume_position = (epoch, taken)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size)
