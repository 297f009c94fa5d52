"""A comment that cites a library version ("transformers 5.24", "llama-cpp-python 0.3.36") says something that
was true of that version. Either it is the version the lock installs, so a `make lock` that moves the library
fails here and the comment is looked at again, or the comment names the test that would notice the change."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"transformers": "transformers", "accelerate": "accelerate", "peft": "peft", "trl": "trl", "torch": "torch",
            "llama-cpp-python": "llama-cpp-python", "sentence-transformers": "sentence-transformers",
            "faiss-cpu": "faiss-cpu", "datasets": "datasets", "gguf": "gguf", "bitsandbytes": "bitsandbytes"}
CITED = re.compile(r"\b(" + "|".join(re.escape(name) for name in PACKAGES) + r") v?(\d+\.\d+(?:\.\d+)?)\b",
                   re.IGNORECASE)
NEAR = 4  # lines around a citation in which a test may be named


def locked() -> dict[str, str]:
    versions = {}
    for line in (ROOT / "requirements" / "dev.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            versions[match.group(1).lower()] = match.group(2)
    return versions


def product_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return [ROOT / n for n in names if not n.startswith(("tests/", "benchmarks/")) and (ROOT / n).is_file()]


def test_every_cited_library_version_is_the_locked_one_or_a_test_watches_it():
    versions = locked()
    stale = []
    for path in product_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            for name, version in CITED.findall(line):
                pin = versions.get(PACKAGES[name.lower()].lower(), "")
                around = "\n".join(lines[max(0, number - NEAR): number + NEAR + 1])
                if pin.split("+")[0].startswith(version) or re.search(r"tests/[\w/]+\.py", around):
                    continue
                stale.append(f"{path.relative_to(ROOT)}:{number + 1}: cites {name} {version}, the lock has "
                             f"{pin or 'no such pin'}")
    assert not stale, "\n".join(stale)
