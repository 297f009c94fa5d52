"""The public-runs table (advisor/public_runs.yaml): reading it and checking it. advisor/efficiency.py fits to it.

Every problem is reported at once, one line each, naming the run and the key, with a did-you-mean for unknown
keys and GPU names. Read lazily, once per process, the first time an estimate needs an efficiency.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from rung.advisor.estimate_math import gpu_spec
from rung.core.checks import mapping_problems, unknown_key_problems
from rung.core.errors import RungError
from rung.core.fileio import shown

RUNS_FILE = Path(__file__).with_name("public_runs.yaml")
TOP_KEYS = ("fit", "runs")
FIT_KEYS = ("nearest", "level")
REQUIRED = ("name", "params_b", "tokens", "gpu", "gpu_hours", "source", "where")
RUN_KEYS = (*REQUIRED, "note", "exclude")
COUNTS = ("params_b", "tokens", "gpu_hours")  # positive numbers; tokens and gpu_hours may be written 2.0T, 1.46M

_CACHE: dict[str, dict[str, Any]] = {}


def _count(value: Any) -> float | None:
    from rung.advisor.estimate_math import parse_count

    try:
        number = parse_count(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _check_fit(fit: Any, where: str, n_runs: int) -> list[str]:
    if not isinstance(fit, dict):
        return [f"{where}: fit: expected a mapping {{nearest: N, level: L}}, got {shown(fit)}"]
    problems = unknown_key_problems(fit, FIT_KEYS, f"{where}: fit")
    nearest, level = fit.get("nearest"), fit.get("level")
    if isinstance(nearest, bool) or not isinstance(nearest, int) or not 1 <= nearest:
        problems.append(f"{where}: fit.nearest: expected a whole number >= 1 (runs averaged), got {shown(nearest)}")
    elif n_runs and nearest >= n_runs:
        problems.append(f"{where}: fit.nearest: {nearest} is not below the {n_runs} runs in the table")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        problems.append(f"{where}: fit.level: expected a probability in (0, 1) (the band's coverage), got {shown(level)}")
    return problems


def _run_problems(run: Any, label: str) -> Iterator[str]:
    """One run of the table: a mapping of known keys, the required ones, counts, texts and a known GPU."""
    is_mapping, problems = mapping_problems(run, RUN_KEYS, label, f"a mapping with {', '.join(REQUIRED)}")
    yield from problems
    if not is_mapping:
        return
    yield from (f"{label}: missing {key}" for key in REQUIRED if key not in run)
    for key in COUNTS:
        if key in run and _count(run[key]) is None:
            yield f"{label}: {key}: expected a positive number (2.0T, 1.46M, 184320), got {shown(run[key])}"
    for key in ("name", "source", "where", "note", "exclude"):
        if key in run and not (isinstance(run[key], str) and run[key].strip()):
            yield f"{label}: {key}: expected text, got {shown(run[key])}"
    if "gpu" in run:
        try:
            gpu_spec(str(run["gpu"]))
        except RungError as error:
            yield f"{label}: gpu: {error.message}"


def validate_runs(data: Any, where: str) -> list[str]:
    """Every problem of a public-runs table, one line each (empty when it is fine)."""
    is_mapping, problems = mapping_problems(data, TOP_KEYS, where, f"a mapping with keys {', '.join(TOP_KEYS)}")
    if not is_mapping:
        return problems
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        return problems + [f"{where}: runs: expected a non-empty list of runs, got {shown(runs)}"]
    problems += _check_fit(data.get("fit"), where, len(runs))
    seen: set[str] = set()
    for index, run in enumerate(runs, start=1):
        name = run.get("name") if isinstance(run, dict) else None
        label = f"{where}: run {index}" + (f" ({name})" if isinstance(name, str) else "")
        problems += _run_problems(run, label)
        if isinstance(name, str):
            if name.lower() in seen:
                problems.append(f"{label}: name: listed twice")
            seen.add(name.lower())
    return problems


def _normalised(run: dict[str, Any]) -> dict[str, Any]:
    from rung.advisor.estimate_math import gpu_spec

    spec = gpu_spec(str(run["gpu"]))
    out = {key: run[key] for key in RUN_KEYS if key in run}
    out.update({key: _count(run[key]) for key in COUNTS})
    out.update(gpu=spec["name"], peak_bf16_tflops=spec["peak_bf16_tflops"], generation=spec["generation"])
    # what the run achieved, as a fraction of its GPUs' dense BF16 peak (6N FLOPs per token, like the estimator)
    flops = 6 * out["params_b"] * 1e9 * out["tokens"]
    out["mfu"] = flops / (out["gpu_hours"] * 3600 * spec["peak_bf16_tflops"] * 1e12)
    return out


def load_runs(path: str | Path | None = None) -> dict[str, Any]:
    """{"nearest", "level", "runs": [run with numbers parsed, gpu canonical, generation, mfu]}; RungError lists
    every problem of the file."""
    from rung.core.fileio import read_yaml

    path = Path(path) if path else RUNS_FILE
    key = str(path)
    if key not in _CACHE:
        data = read_yaml(path, what="public-runs table")
        problems = validate_runs(data, where=str(path))
        if problems:
            raise RungError(problems)
        _CACHE[key] = {"nearest": int(data["fit"]["nearest"]), "level": float(data["fit"]["level"]),
                       "runs": [_normalised(run) for run in data["runs"]], "path": key}
    return _CACHE[key]
