"""Networks: the classic UNet, the UNet with a timm encoder, and their decoder upsampling blocks."""

from unet_upsampling.models.encoder_unet import EncoderUNet
from unet_upsampling.models.unet import UNet

__all__ = ["EncoderUNet", "UNet"]
