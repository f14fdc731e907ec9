"""The Binder environment (``binder/``): every package nbhooks and its notebooks need, pinned at
the version this project's venv tests. Binder installs nbhooks itself with ``--no-deps``
(``postBuild``), so a dependency missing from ``requirements.txt`` is missing there."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.fast

ROOT = Path(__file__).parents[1]


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[canonicalize_name(name)] = version
    return found


def needed() -> list[Requirement]:
    """nbhooks' own dependencies, its demo's (the notebooks) and TensorFlow's CPU build."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["demo"], *extras["cpu"]]
    return [Requirement(r) for r in wanted]


def test_binder_pins_every_dependency_at_the_tested_version() -> None:
    """Before: cloudpickle (LocalCluster, notebooks/distributed.ipynb) was not pinned, and
    postBuild's ``pip install --no-deps -e .`` did not bring it."""
    pinned = pins()
    for requirement in needed():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"binder/requirements.txt lacks {requirement.name}"
        assert requirement.specifier.contains(pinned[name]), (requirement, pinned[name])
        assert pinned[name] == importlib.metadata.version(name), (
            f"binder pins {name}=={pinned[name]}, the venv tests {importlib.metadata.version(name)}"
        )
