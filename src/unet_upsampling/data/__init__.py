"""Data sources (synthetic, folders, torchvision) behind one DataModule."""

from unet_upsampling.data.datamodule import SegmentationDataModule

__all__ = ["SegmentationDataModule"]
