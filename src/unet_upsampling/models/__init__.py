"""Networks: the classic UNet, the UNet with a timm encoder, and their decoder upsampling blocks."""

from unet_upsampling.models.unet import UNet

__all__ = ["EncoderUNet", "UNet"]


def __getattr__(name: str):
    """``EncoderUNet`` on first use: timm is imported by the runs that build one, not by every run's start-up."""
    if name == "EncoderUNet":
        from unet_upsampling.models.encoder_unet import EncoderUNet

        return EncoderUNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
