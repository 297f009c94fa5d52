"""How fast does `rung advise` start? Median wall time against `python -c "import click, yaml"`, side by side.

The issue's bar: `rung advise` median <= 1.5x the median of `python -c "import click, yaml"`. Runs alternate
(baseline, advise, baseline, advise, ...) so machine load hits both alike. Prints a markdown table (the advisor section of BENCHMARKS.md); --out also writes it to a file.

    python benchmarks/bench_advise.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWERS = """goal: schema
prompting_result: inconsistent
labeled_examples: 2000
gpu_memory_gb: 80
gpu_count: 1
base_model_params_b: 7
"""


def rung_command() -> list[str]:
    script = Path(sys.executable).parent / "rung"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from rung.cli.main import main; main()"]


# A normal install writes .pyc files; some sandboxes set PYTHONDONTWRITEBYTECODE, which would make every run
# recompile rung's (editable) sources and measure the compiler instead of start-up. The warm-ups write them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="timed runs of each command (after 3 warm-ups that also write .pyc files)")
    parser.add_argument("--out", default=None, help="also write the markdown report to this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        answers = Path(tmp) / "answers.yaml"
        answers.write_text(ANSWERS, encoding="utf-8")
        commands = {
            "python -c \"import click, yaml\"": [sys.executable, "-c", "import click, yaml"],
            "rung advise --answers answers.yaml": [*rung_command(), "advise", "--answers", str(answers)],
            "rung advise --answers answers.yaml --json": [*rung_command(), "advise", "--answers", str(answers), "--json"],
        }
        for command in commands.values():  # warm the page cache and .pyc files
            for _ in range(3):
                timed(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(timed(command))
    base_name = next(iter(commands))
    base = statistics.median(times[base_name])
    lines = [
        "# `rung advise` start-up",
        "",
        f"Median wall time of {args.runs} runs each, interleaved, measured by `benchmarks/bench_advise.py` "
        f"on {platform.machine()} / Python {platform.python_version()} / {os.cpu_count()} CPUs "
        f"({time.strftime('%Y-%m-%d')}). The bar: `rung advise` <= 1.5x `python -c \"import click, yaml\"`.",
        "",
        "| command | median (ms) | p90 (ms) | ratio to baseline |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        lines.append(f"| `{name}` | {median * 1000:.1f} | {p90 * 1000:.1f} | {median / base:.2f}x |")
    ratio = statistics.median(times["rung advise --answers answers.yaml"]) / base
    lines += ["", f"Result: {ratio:.2f}x — {'within' if ratio <= 1.5 else 'OVER'} the 1.5x bar.", "",
              "Measured with .pyc files written, as after a normal install. With PYTHONDONTWRITEBYTECODE=1 and an "
              "editable install every run recompiles rung's own modules; that measured ~1.45-1.6x on the same "
              "machine while developing.", ""]
    text = "\n".join(lines)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
