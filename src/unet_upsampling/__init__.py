"""UNet segmentation with a configurable decoder upsampling block."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations must not call the network at import

__version__ = "0.1.0"
