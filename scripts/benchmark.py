"""Speed benchmark: ``python scripts/benchmark.py [--help]`` from the repository root; the code is in scripts/bench/.

MONAI's BasicUNet, the peer of the training part, comes with the ``bench`` extra
(``pip install -e '.[bench]'``); without it only our networks are timed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/: the bench package, however this file is run

from bench.cli import main

if __name__ == "__main__":
    main()
