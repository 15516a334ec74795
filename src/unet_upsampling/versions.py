"""The oldest torch, torchvision and Lightning that give this project's guarantees, checked at import.

pyproject.toml's floors are these numbers (tests/test_security.py checks that they agree).
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

# name: (oldest release, why)
FLOORS = {
    "torch": ((2, 6), "torch.load(weights_only=True) can run code before 2.6.0, CVE-2025-32434"),
    "torchvision": ((0, 21), "the release built for torch 2.6"),
    "lightning": ((2, 6), "Trainer.fit/validate/test take weights_only from 2.6.0"),
}


def release(text: str) -> tuple[int, ...]:
    """``'2.6.0+cu124'`` -> ``(2, 6, 0)``: the numeric release, local and pre-release tags left out."""
    match = re.match(r"\d+(\.\d+)*", text)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def check_versions() -> None:
    """An ImportError naming the package, its installed version and the floor, for any below its floor."""
    for name, (floor, why) in FLOORS.items():
        try:
            found = version(name)
        except PackageNotFoundError:  # importing it will fail with Python's own message
            continue
        if release(found) < floor:
            need = ".".join(map(str, floor))
            raise ImportError(
                f"unet_upsampling needs {name}>={need} ({why}), but {name} {found} is installed: "
                f"pip install '{name}>={need}' (or reinstall this project: pip install -e .)"
            )
