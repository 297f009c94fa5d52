"""Rewrite every example's plan.yaml and PLAN.md with the `rung plan` command in its answers.yaml header.

Run after a change to the advisor's rules or planner (tests/cli/test_examples.py fails with "plan.yaml is stale"):

    .venv/bin/python examples/replan.py          # from the repository root
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def header_commands(answers: Path) -> list[str]:
    """The `rung ...` commands in the answers file's header comment, with `\\` continuations joined."""
    commands, current = [], ""
    for line in answers.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if current:
            current += " " + text.rstrip("\\").strip()
        elif text.startswith("rung "):
            current = text.rstrip("\\").strip()
        if current and not text.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def main() -> int:
    rung = str(Path(sys.executable).with_name("rung"))
    for answers in sorted((ROOT / "examples").rglob("answers.yaml")):
        plan = next(c for c in header_commands(answers) if c.startswith("rung plan "))
        print(f"$ {plan}")
        subprocess.run([rung, *shlex.split(plan)[1:]], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
