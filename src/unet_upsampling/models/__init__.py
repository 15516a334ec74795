"""Networks: the UNet and its decoder upsampling blocks."""

from unet_upsampling.models.unet import UNet

__all__ = ["UNet"]
