"""`rung run`'s state: run_state.json (per-step status, outputs, metrics, wall time), for --resume.

Files in the run root (the plan's folder unless --out): resolved_plan.yaml (a runnable plan: resolved
settings, absolute data paths), run_state.json, report.md, and <step id>/ for each step's outputs.
"""

from __future__ import annotations

import datetime as _dt
import json
import resource
import sys
from pathlib import Path
from typing import Any

from rung.core.errors import RungError

STATE_FILE = "run_state.json"
RESOLVED_FILE = "resolved_plan.yaml"
REPORT_FILE = "report.md"
RUN_ROOT_FILES = (STATE_FILE, RESOLVED_FILE, REPORT_FILE)  # what rung writes in the run root beside step folders
STATE_VERSION = 1


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def plan_fingerprint(plan: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(jsonable(plan), sort_keys=True).encode()).hexdigest()[:16]


STATUSES = ("running", "failed", "done", "open")
# key -> the types a step record may hold there (what run/execute.py writes)
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "engine": (str,), "status": (str,), "started": (str,), "finished": (str,), "attempts": (int,),
    "wall_s": (int, float, type(None)), "wall_s_earlier": (int, float, type(None)), "outputs": (dict,),
    "metrics": (dict,), "summary": (str,), "error": (str,), "peak_rss_mb": (int, float, type(None)),
    "gpu_peak_gb": (int, float, type(None)),
}


def state_problem(state: Any) -> str | None:
    """None for a run state this rung wrote; else what is wrong with it, in a few words."""
    from rung.core.fileio import short, shown

    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return f"not a run state this rung can read (version {STATE_VERSION})"
    steps = state.get("steps")
    if not isinstance(steps, dict):
        return f"steps is {short(steps)}, not a mapping of step id -> record"
    for step_id, record in steps.items():
        at = f"steps.{shown(step_id, 40)}"
        if not isinstance(record, dict):
            return f"{at} is {short(record)}, not a step record"
        if record.get("status") not in STATUSES:
            return f"{at}.status is {short(record.get('status'))}, not one of {', '.join(STATUSES)}"
        for key, types in RECORD_TYPES.items():
            value = record.get(key)
            if key in record and (not isinstance(value, types) or isinstance(value, bool)):
                return f"{at}.{key} is {short(value)}, not {' or '.join(t.__name__ for t in types)}"
    return None


def load_state(run_root: Path) -> dict[str, Any] | None:
    """run_state.json, checked; None when there is none. A damaged one is one RungError line (exit 2) saying
    how to recover."""
    from rung.core.fileio import read_text

    path = run_root / STATE_FILE
    if not path.exists() and not path.is_symlink():
        return None
    recover = (f"delete {path} to run every step again (finished step folders are kept and overwritten), "
               "or remove the damaged step's entry to run that step again")
    try:
        state = json.loads(read_text(path, what="run state", max_bytes=64 * 1024 * 1024))
    except json.JSONDecodeError as error:
        raise RungError(f"{path}: the run state is not valid JSON (line {error.lineno}: {error.msg}); "
                        f"{recover}") from None
    except RecursionError:
        raise RungError(f"{path}: the run state is nested too deeply; {recover}") from None
    except RungError as error:
        raise RungError(f"{error.message}; {recover}") from None
    problem = state_problem(state)
    if problem:
        raise RungError(f"{path}: {problem}; {recover}")
    return state


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS); children covers `accelerate launch` workers
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return round(max(own, children), 1)


def gpu_reset() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_gb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return None


