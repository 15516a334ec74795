"""Train a UNet: python train.py upsample=deconv (see configs/ for every option)."""

from unet_upsampling.entry import train

if __name__ == "__main__":
    train()
