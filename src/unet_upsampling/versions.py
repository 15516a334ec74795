"""The oldest torch, torchvision and Lightning that give this project's guarantees, checked at import.

pyproject.toml's floors are these numbers (tests/test_security.py checks that they agree).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

# name: (oldest release, why)
FLOORS = {
    "torch": ((2, 6), "torch.load(weights_only=True) can run code before 2.6.0, CVE-2025-32434"),
    "torchvision": ((0, 21), "the release built for torch 2.6"),
    "lightning": ((2, 6), "Trainer.fit/validate/test take weights_only from 2.6.0"),
}


def below(found: str, floor: tuple[int, ...]) -> bool:
    """Whether version ``found`` is older than the release ``floor``. A pre-release or development build of the floor
    itself (``2.6.0a0+git5fb11`` from source, ``2.6.0.dev20241112`` nightly, ``2.6.0rc1``) is: it may predate the
    fix the floor is for. A local build of a release (``2.6.0+cu124``) is not."""
    return Version(found) < Version(".".join(map(str, floor)))


def check_versions() -> None:
    """An ImportError naming the package, its installed version and the floor, for any below its floor."""
    for name, (floor, why) in FLOORS.items():
        try:
            found = version(name)
        except PackageNotFoundError:  # importing it will fail with Python's own message
            continue
        if below(found, floor):
            need = ".".join(map(str, floor))
            early = f" (a pre-release of {Version(found).base_version})" if Version(found).is_prerelease else ""
            raise ImportError(
                f"unet_upsampling needs {name}>={need} ({why}), but {name} {found} is installed{early}: "
                f"pip install '{name}>={need}' (or reinstall this project: pip install -e .)"
            )
