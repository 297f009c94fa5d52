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


def load_state(run_root: Path) -> dict[str, Any] | None:
    path = run_root / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RungError(f"{path}: cannot read the run state ({error}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise RungError(f"{path}: not a run state this rung can read; delete it to start over")
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


