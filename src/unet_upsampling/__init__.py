"""UNet segmentation with a configurable decoder upsampling block."""

import os

from unet_upsampling.packing import register_resolvers
from unet_upsampling.versions import check_versions

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations must not call the network at import
check_versions()
register_resolvers()  # before any config is composed: the sweep configs use ${unet.packed_jobs:N}

__version__ = "0.1.0"
