"""The wheel holds the whole product: every package folder and data file under the product's folders is listed
in pyproject.toml (the repository root is the package `rung`, mapped with package-dir, so nothing is found
automatically and a new subpackage must be named there)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

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
