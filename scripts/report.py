"""Report an upsampling study: python scripts/report.py <multirun dir> [--out DIR] [--reference deconv]"""

from unet_upsampling.report.build import main

if __name__ == "__main__":
    main()
