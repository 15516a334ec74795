"""Train a UNet: python train.py upsample=deconv (see configs/ for every option)."""

from unet_upsampling.train import main

if __name__ == "__main__":
    main()
