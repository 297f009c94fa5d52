"""The test environment is locked: requirements/dev.lock names every package at one version, it covers every
dependency pyproject.toml declares (within its range), and the environment running this suite is exactly it."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "dev.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def declared() -> list[Requirement]:
    """Every requirement of the core and of every extra, self-references (rung[...]) left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != "rung"]


def test_every_declared_dependency_is_locked_within_its_range():
    pins = locked()
    problems = []
    for requirement in declared():
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement} is not in {LOCK.name}: run `make lock`")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: the lock has {version}")
    assert not problems, "\n".join(problems)


def test_the_lock_pins_the_cpu_torch():
    assert locked()["torch"] == "2.13.0+cpu"
    assert not [name for name in locked() if name.startswith(("nvidia-", "triton", "cuda-"))]


def test_the_running_environment_is_the_lock():
    """What `make venv` installed, and nothing else: a package outside the lock, or at another version, fails."""
    if sys.prefix == sys.base_prefix:
        pytest.fail("the suite runs outside a virtual environment: run it with `make test`")
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed.pop("rung", None)
    installed.pop("pip", None)  # pinned by the Makefile (PIP_PIN), not by the lock
    differences = sorted(f"{name}: installed {installed.get(name)}, locked {pins.get(name)}"
                         for name in set(installed) | set(pins) if installed.get(name) != pins.get(name))
    assert not differences, "rebuild the venv from the lock (rm -rf .venv; make venv):\n" + "\n".join(differences)
