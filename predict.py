"""Predict masks: python predict.py ckpt_path=... input=DIR output=DIR"""

from unet_upsampling.entry import predict

if __name__ == "__main__":
    predict()
