"""Predict masks: python predict.py ckpt_path=... input=DIR output=DIR"""

from unet_upsampling.predict import main

if __name__ == "__main__":
    main()
