"""Evaluate a checkpoint on the data it was trained on: python eval.py ckpt_path=... [+data.KEY=VALUE | data=OPTION]"""

from unet_upsampling.entry import evaluate

if __name__ == "__main__":
    evaluate()
