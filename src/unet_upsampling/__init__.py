"""UNet segmentation with a configurable decoder upsampling block."""

import time

STARTED = time.perf_counter()  # before torch and Lightning are imported: a run's start-up counts from here (phases.py)

import os  # noqa: E402

from unet_upsampling.packing import register_resolvers  # noqa: E402
from unet_upsampling.versions import check_versions  # noqa: E402

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations must not call the network at import
check_versions()
register_resolvers()  # before any config is composed: the sweep configs use ${unet.packed_jobs:N}

__version__ = "0.1.0"
