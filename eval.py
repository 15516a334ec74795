"""Evaluate a checkpoint on the data it was trained on: python eval.py ckpt_path=... [+data.KEY=VALUE | data=OPTION]"""

from unet_upsampling.evaluate import main

if __name__ == "__main__":
    main()
