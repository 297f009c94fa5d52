"""The wheel holds the whole product: every package folder and data file under the product's folders is listed
in pyproject.toml (the repository root is the package `rung`, mapped with package-dir, so nothing is found
automatically and a new subpackage must be named there)."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "advisor", "rag", "trainers", "engines", "run", "cli")


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_in_the_wheel():
    found = {"rung"} | {"rung." + ".".join(init.parent.relative_to(ROOT).parts)
                        for folder in PRODUCT for init in (ROOT / folder).rglob("__init__.py")
                        if "__pycache__" not in init.parts}
    assert set(setuptools_config()["packages"]) == found


def test_every_data_file_is_in_the_wheel():
    data = setuptools_config().get("package-data", {})
    for folder in PRODUCT:
        for path in (ROOT / folder).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            package = "rung." + ".".join(path.parent.relative_to(ROOT).parts)
            assert any(fnmatch.fnmatch(path.name, pattern) for pattern in data.get(package, [])), path


@pytest.mark.parametrize("name", PRODUCT)
def test_a_subpackage_imported_by_its_bare_name_from_the_root_fails_at_once(name):
    """From the repository root `import core` would otherwise load a second copy of rung.core (a second RungError
    class: `except RungError` stops catching)."""
    done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert f"ImportError: import rung.{name}, not {name}: the repository root is the package rung" in done.stderr


def _tracked_product_files() -> set[str]:
    """The files of the package as git knows them, named as they sit in the wheel (rung/...)."""
    listed = subprocess.run(["git", "ls-files", "--", "__init__.py", *PRODUCT], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    data = setuptools_config().get("package-data", {})

    def shipped(path: str) -> bool:
        folder, name = path.rpartition("/")[::2]
        package = "rung" + ("." + folder.replace("/", ".") if folder else "")
        return name.endswith(".py") or any(fnmatch.fnmatch(name, p) for p in data.get(package, []))

    return {"rung/" + path for path in listed if shipped(path)}


@pytest.mark.slow
def test_the_wheel_holds_the_package_files_and_nothing_else(tmp_path):
    """A stray .py at the root (a scratch script, a benchmark helper) would ship as rung/<name>.py: any file in
    the wheel that is not one of the package's own tracked files fails here."""
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("rung-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.startswith("rung-") or "dist-info" not in n}
    assert names == _tracked_product_files()
