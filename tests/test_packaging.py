"""What a fresh machine installs (make train: the core; make test/lint: the dev extras), the package metadata, and
pointers from the code and configs to README sections that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import ROOT, TINY

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def planned(target: str, tmp_path: Path) -> str:
    """The commands ``make TARGET`` would run on a machine without a .venv (``make -n``)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_train_installs_the_core_and_make_test_and_lint_the_dev_extras(tmp_path):
    train = planned("train", tmp_path)
    assert "pip install -e .\n" in train and "[dev]" not in train and "train.py" in train
    for target in ("test", "lint"):
        commands = planned(target, tmp_path)
        assert "pip install -e .\n" in commands and 'pip install -e ".[dev]"' in commands


def test_the_readme_s_cpu_install_takes_torch_s_cpu_wheels_within_the_project_s_bounds():
    """A CPU-only user installs torch's CPU build first; a build above pyproject.toml's bounds would be replaced by
    the default (CUDA) one at ``pip install -e .``."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "--index-url" in line)
    assert line.endswith("--index-url https://download.pytorch.org/whl/cpu") and line.startswith("python -m venv .venv")
    asked = {r.name: r.specifier for r in map(Requirement, re.findall(r'"([^"]+)"', line))}
    bounds = {r.name: r.specifier for r in map(Requirement, PYPROJECT["project"]["dependencies"]) if r.name in asked}
    assert set(asked) == {"torch", "torchvision"}
    assert all(str(asked[name]) in str(bounds[name]).split(",") for name in asked)  # the same upper bound


def normalised(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def core_distributions() -> set[str]:
    """The installed distributions the project's own dependencies pull in (extras left out), normalised names."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = normalised(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # an optional dependency of a dependency, not installed here
        seen.add(name)
        todo += [Requirement(r) for r in requires]
    return seen


@pytest.mark.slow
def test_the_core_dependencies_alone_train_a_run(tmp_path):
    """train.py under ``python -S`` (no site-packages) with a path that holds the core distributions alone, linked
    from this environment: what ``make train`` installs, without downloading it again."""
    core = core_distributions()
    site = Path(metadata.distribution("torch").locate_file(""))
    modules = {m for m, dists in metadata.packages_distributions().items() if {normalised(d) for d in dists} & core}
    assert not {"mlflow", "monai", "optuna", "pytest", "tensorboard"} & modules  # the dev extras stay out
    core_site = tmp_path / "core_site"
    core_site.mkdir()
    for entry in site.iterdir():
        dist_info = entry.suffix == ".dist-info" and normalised(entry.name.split("-")[0]) in core
        if dist_info or entry.name.split(".")[0] in modules:
            (core_site / entry.name).symlink_to(entry)
    result = subprocess.run(  # noqa: PLW1510 (the return code is the assertion)
        [sys.executable, "-S", str(ROOT / "train.py"), *TINY, "trainer.fast_dev_run=true", "hydra.run.dir=run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(core_site), str(ROOT / "src")])},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_the_license_is_an_spdx_expression_the_build_backend_reads_without_deprecation(tmp_path):
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    backend = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    setuptools_spec = next(r.specifier for r in backend if r.name == "setuptools")
    assert "76.9" not in setuptools_spec and "77.0" in setuptools_spec  # 77: PEP 639 license expressions
    assert metadata.version("setuptools") in setuptools_spec
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the table form, license = {text = ...}, warns that it is deprecated
        distribution = apply_configuration(Distribution(), str(tmp_path / "pyproject.toml"))
    assert distribution.metadata.license_expression == "MIT"


# A pointer such as (README, <section>) or (README: "<section>"), the section named in capitals.
README_POINTER = re.compile(r"""README(?:\.md)?[,:]\s+"?([A-Z][\w ,()`=-]*?)"?\)""")


def test_pointers_to_readme_sections_name_sections_that_exist():
    sections = {line.lstrip("#").strip() for line in (ROOT / "README.md").read_text().splitlines() if line[:2] == "##"}
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    pointers = {
        (name, match.group(1))
        for name in files
        if name != "README.md" and (ROOT / name).is_file() and not name.startswith("docs/study/")
        for match in README_POINTER.finditer((ROOT / name).read_text(errors="ignore"))
    }
    assert not {(name, section) for name, section in pointers if section not in sections}, sections
