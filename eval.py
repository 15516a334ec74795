"""Evaluate a checkpoint: python eval.py ckpt_path=... [data=...]"""

from unet_upsampling.evaluate import main

if __name__ == "__main__":
    main()
