"""`rung run`, step 2: run the prepared steps in order, each in <run root>/<step id>, and write report.md.

State is written after every change (run/state.py), so `--resume` skips finished steps and hands an
interrupted one its checkpoint.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import rung.trainers  # noqa: F401  registers builtin:tiny-base with the model loader (cheap: no torch)
from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text, make_dir
from rung.core.protocol import StepContext, StepResult
from rung.engines import registry
from rung.run.prepare import Prepared, resolved_plan_text
from rung.run.report import duration, write_report
from rung.run.state import (RESOLVED_FILE, STATE_FILE, STATE_VERSION, gpu_peak_gb, gpu_reset, jsonable, load_state,
                            now, peak_rss_mb, plan_fingerprint)


def execute(prep: Prepared, *, resume: bool = False, echo: Callable[[str], None] = print,
            engine_lookup: Callable[[str], Callable] | None = None) -> Path:
    """Run the steps in order, each in <run root>/<step id>; write state after every change and report.md."""
    engine_lookup = engine_lookup or registry.engine_function
    root = prep.run_root
    state = load_state(root) if resume else None  # a damaged state stops here, before any write
    make_dir(root, what="run root")
    fingerprint = plan_fingerprint(prep.plan)
    if resume and state is None:
        echo(f"No earlier run in {root}: starting from the first step.")
    if state is not None and state.get("plan_fingerprint") != fingerprint:
        echo("Note: the plan or its settings changed since the interrupted run; finished steps are kept.")
    if state is None:
        state = {"version": STATE_VERSION, "plan": str(prep.plan_path), "started": now(), "steps": {}}
    state["plan_fingerprint"] = fingerprint
    state["gpus"] = prep.gpus
    atomic_write_text(root / RESOLVED_FILE, resolved_plan_text(prep))
    atomic_write_json(root / STATE_FILE, state)

    outputs: dict[str, dict[str, Any]] = {}
    total = len(prep.steps)
    for number, step in enumerate(prep.steps, start=1):
        step_id, engine = step["id"], step["engine"]
        record = state["steps"].get(step_id)
        if record and record.get("status") in ("done", "open"):
            echo(f"[{number}/{total}] {step_id}: {record['status']} in an earlier run, skipped (--resume)")
            outputs[step_id] = record.get("outputs", {})
            continue
        step_resume = bool(resume and record and record.get("status") in ("running", "failed"))
        run_dir = root / step_id
        make_dir(run_dir, what="step folder")
        record = {
            "engine": engine, "status": "running", "started": now(),
            "attempts": (record or {}).get("attempts", 0) + 1,
            "wall_s_earlier": round((record or {}).get("wall_s", 0.0) or 0.0, 2) if step_resume else 0.0,
        }
        state["steps"][step_id] = record
        atomic_write_json(root / STATE_FILE, state)
        description = step.get("description") or ""
        adapter = (step.get("settings") or {}).get("adapter")  # the resolved one: --set may have changed it
        echo(f"[{number}/{total}] {step_id} ({engine}{', adapter ' + adapter if adapter else ''})"
             f"{': ' + description if description else ''}"
             f"{' - resuming' if step_resume else ''}")
        ctx = StepContext(plan=prep.plan, plan_dir=prep.plan_dir, run_dir=run_dir, resume=step_resume,
                          outputs=dict(outputs), cli_settings=dict(prep.cli_settings.get(step_id, {})),
                          gpus=prep.gpus, **prep.cluster)
        gpu_reset()
        started = time.perf_counter()
        try:
            result = engine_lookup(engine)(copy.deepcopy(step), ctx)
            if not isinstance(result, StepResult):
                raise TypeError(f"engine {engine} returned {type(result).__name__}, expected StepResult")
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt)
            record.update(status="failed", finished=now(),
                          wall_s=round(time.perf_counter() - started + record["wall_s_earlier"], 2),
                          error="interrupted" if interrupted else f"{type(error).__name__}: {str(error).strip()}")
            atomic_write_json(root / STATE_FILE, state)
            write_report(prep, state)
            if isinstance(error, RungError):
                lines = str(error.message).splitlines() or [type(error).__name__]
                raise RungError([f"step {step_id} ({engine}): {line}" for line in lines]
                                + [f"fix it, then continue with: rung run {prep.plan_path} --resume"
                                   + (f" --out {root}" if root != prep.plan_dir else "")]) from None
            raise
        wall = time.perf_counter() - started + record["wall_s_earlier"]
        status = "open" if (engine == "manual" or result.metrics.get("status") == "open") else "done"
        record.update(status=status, finished=now(), wall_s=round(wall, 2), outputs=jsonable(result.outputs),
                      metrics=jsonable(result.metrics), summary=result.summary or "",
                      peak_rss_mb=peak_rss_mb(), gpu_peak_gb=gpu_peak_gb())
        outputs[step_id] = record["outputs"]
        atomic_write_json(root / STATE_FILE, state)
        write_report(prep, state)
        echo(f"[{number}/{total}] {step_id}: {status} in {duration(wall)}")
    state["finished"] = now()
    atomic_write_json(root / STATE_FILE, state)
    return write_report(prep, state)


