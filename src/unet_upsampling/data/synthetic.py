"""Procedural images that stress upsampling: thin curves, small blobs, sharp polygons, texture, noise.

Every sample is a pure function of (seed, index). Three kinds of structure, each with its own
intensity; kind k (0 curves, 1 blobs, 2 polygons) gets class min(k + 1, num_classes - 1), so
``num_classes=2`` is binary foreground and ``num_classes=4`` separates the three kinds.
"""

from __future__ import annotations

import cv2
import numpy as np
from torch.utils.data import Dataset

from unet_upsampling.errors import ConfigError

CONTRAST = (-0.35, 0.3, 0.18)  # curves dark, blobs bright, polygons mid-bright


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random field at three scales in about [-1, 1]."""
    field = np.zeros((size, size), np.float32)
    for cells, weight in ((4, 0.6), (12, 0.3), (32, 0.1)):
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        field += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return field


def _curve(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random walk: points 2 px apart whose heading drifts."""
    steps = int(rng.integers(20, max(21, 3 * size // 4)))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.12, steps))
    xy = rng.uniform(0, size, 2) + np.cumsum(2.0 * np.stack([np.cos(heading), np.sin(heading)], 1), 0)
    return np.round(xy).astype(np.int32)


def render(seed: int, index: int, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx1, mask uint8 HxW) pair."""
    rng = np.random.default_rng([seed, index])
    masks = [np.zeros((size, size), np.uint8) for _ in CONTRAST]
    for _ in range(rng.integers(3, 8)):
        cv2.polylines(masks[0], [_curve(rng, size)], False, 1, int(rng.integers(1, 4)), cv2.LINE_8)
    for _ in range(rng.integers(4, 12)):
        center = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(2, 7, 2))
        cv2.ellipse(masks[1], center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1, cv2.LINE_8)
    for _ in range(rng.integers(1, 4)):
        corners = rng.uniform(-1, 1, (int(rng.integers(3, 6)), 2)) * rng.uniform(6, max(6, size / 6))
        polygon = np.round(corners + rng.uniform(0, size, 2)).astype(np.int32)
        cv2.fillPoly(masks[2], [cv2.convexHull(polygon)], 1, cv2.LINE_8)

    image = 0.5 + 0.12 * _texture(rng, size)
    label = np.zeros((size, size), np.uint8)
    for kind in (2, 1, 0):  # curves drawn last, on top
        inside = masks[kind].astype(bool)
        image[inside] += CONTRAST[kind]
        label[inside] = min(kind + 1, num_classes - 1)
    image = cv2.GaussianBlur(image, (0, 0), 0.6) + rng.normal(0, 0.05, image.shape).astype(np.float32)
    return np.clip(image * 255, 0, 255).astype(np.uint8)[..., None], label


class SyntheticSegmentation(Dataset):
    """``length`` rendered samples, computed once and kept in memory; ``sizes`` as FolderSegmentation's."""

    def __init__(self, length: int, size: int, num_classes: int = 2, seed: int = 0):
        if num_classes < 2:
            raise ConfigError(f"data.num_classes={num_classes}: synthetic data needs at least 2 classes")
        self.samples = [render(seed, i, size, num_classes) for i in range(length)]
        self.sizes = {f"synthetic image {i}": (size, size) for i in range(length)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.samples[index]


def synthetic_splits(
    train: int = 64, val: int = 16, test: int = 16, size: int = 128, num_classes: int = 2, seed: int = 0
) -> dict[str, Dataset]:
    """Disjoint train/val/test sets: each split renders from its own seed stream."""
    lengths = {"train": train, "val": val, "test": test}
    return {
        name: SyntheticSegmentation(n, size, num_classes, seed=seed * 3 + k)
        for k, (name, n) in enumerate(lengths.items())
        if n > 0
    }
