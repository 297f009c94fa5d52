"""`rung run`'s report.md: what ran, how long it took against the estimate, the samples and the next step."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rung.core.fileio import atomic_write_text
from rung.run.prepare import Prepared
from rung.run.state import REPORT_FILE, RESOLVED_FILE


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds / 3600:.2f} h"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value)[:120] + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _link(path_text: str, root: Path) -> str:
    path = Path(path_text)
    try:
        rel = path.resolve().relative_to(root.resolve())
        return f"[{rel}]({rel.as_posix()})"
    except (ValueError, OSError):
        return f"`{path_text}`"


def _step_files(run_dir: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if p.is_file() and p.suffix in suffixes)


def _hours_text(hours: Any) -> str:
    return duration(float(hours) * 3600) if isinstance(hours, (int, float)) else "-"


def _money_text(usd: Any) -> str:
    if not isinstance(usd, (int, float)):
        return "-"
    return f"${usd:,.2f}" if usd >= 0.01 else f"${usd:.2g}"


def _estimate_cell(est: dict[str, Any]) -> str:
    parts = []
    if est.get("gpu_hours") is not None:
        band = (f" (band {_hours_text(est['gpu_hours_low'])}-{_hours_text(est['gpu_hours_high'])})"
                if est.get("gpu_hours_high") else "")  # plans written before the band have none
        parts.append(f"{_hours_text(est['gpu_hours'])} GPU time{band}")
    if est.get("cost_usd") is not None:
        parts.append(_money_text(est["cost_usd"]))
    if est.get("memory_gb") is not None:
        parts.append(f"{est['memory_gb']:.2f} GB/GPU" + ("" if est.get("fits", True) is not False else " (does not fit)"))
    return ", ".join(parts) or "-"


def gpus_used(gpus: int) -> int:
    """GPUs the steps ran on: --gpus (processes per machine) when torch saw CUDA, else none (the CPU)."""
    torch = sys.modules.get("torch")
    return gpus if gpus and torch is not None and torch.cuda.is_available() else 0


def _device_text(gpus: int) -> str:
    if gpus:
        return f"{gpus} x {sys.modules['torch'].cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores)"


def _estimate_section(plan: dict[str, Any], prep_steps: list[dict[str, Any]], records: dict[str, Any],
                      gpus: int) -> list[str]:
    """The plan's estimate (advisor.estimator figures, for the plan's target GPU) next to what this run measured."""
    estimate = plan.get("estimate") if isinstance(plan.get("estimate"), dict) else {}
    per_step = {s.get("step"): s for s in estimate.get("steps") or [] if isinstance(s, dict)}
    target = estimate.get("gpu") or "-"
    if estimate.get("gpus") and estimate.get("gpu"):
        target = f"{estimate['gpus']} x {estimate['gpu']}"
    rate = estimate.get("usd_per_gpu_hour")
    lines = [f"| step | estimated (plan.yaml, on {target}) | measured (this run, on {_device_text(gpus)}) |",
             "|---|---|---|"]
    total_wall = 0.0
    for step in prep_steps:
        record = records.get(step["id"], {})
        wall = record.get("wall_s")
        total_wall += wall or 0.0
        est = per_step.get(step["id"]) or per_step.get(step["engine"])
        measured = "-" if wall is None else f"{duration(wall)} wall"
        if record.get("gpu_peak_gb") is not None:
            measured += f", {record['gpu_peak_gb']:.2f} GB GPU peak"
        if record.get("peak_rss_mb") is not None:
            measured += f", {record['peak_rss_mb'] / 1024:.2f} GB peak RSS"
        lines.append(f"| {step['id']} | {_estimate_cell(est) if est else '-'} | {measured} |")
    measured_total = f"{duration(total_wall)} wall"
    if gpus and isinstance(rate, (int, float)):
        measured_total += f", {_money_text(total_wall / 3600 * gpus * rate)} at the plan's ${rate}/GPU-hour"
    elif not gpus:
        measured_total += ", no GPU rented"
    total = _estimate_cell(estimate)
    if estimate.get("wall_hours") is not None:
        total += f" ({_hours_text(estimate['wall_hours'])} wall)"
    lines.append(f"| **total** | {total} | {measured_total} |")
    notes = [estimate["note"]] if estimate.get("note") else []
    notes += list(estimate.get("assumptions") or [])
    if notes:
        lines += ["", "Estimate assumptions: " + "; ".join(str(n) for n in notes) + "."]
    return lines


def _embedded_samples(path: Path, root: Path, max_lines: int = 40) -> list[str]:
    """The first lines of a step's samples.md (answers before/after, side by side), headings demoted."""
    text = path.read_text(encoding="utf-8").splitlines()
    body = [("##" + line) if line.startswith("#") else line for line in text[:max_lines]]
    more = f"\n_{len(text) - max_lines} more lines in {_link(str(path), root)}_" if len(text) > max_lines else ""
    return body + ([more] if more else []) + [""]


def write_report(prep: Prepared, state: dict[str, Any]) -> Path:
    """report.md in the run root: the steps at a glance, where it stopped, open to-dos, the estimate against
    what was measured, then one section per step (its summary, outputs, metrics, samples and plots)."""
    root, plan, records = prep.run_root, prep.plan, state.get("steps", {})
    lines = _report_header(prep, state) + _step_table(prep, records) + _stops_and_todos(prep, records)
    lines += ["## Estimate vs actual", ""]
    used = gpus_used(int(state.get("gpus") or 0))
    lines += _estimate_section(plan, prep.steps, records, used)
    if not used:
        lines += ["", "The estimate is for the plan's target GPU; on a CPU, wall time is not comparable: the run "
                  "checks the plan and measures the model, it does not price the GPU run."]
    lines.append("")
    for number, step in enumerate(prep.steps, start=1):
        lines += _step_section(number, step, records.get(step["id"], {}), root)
    path = root / REPORT_FILE
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def _report_header(prep: Prepared, state: dict[str, Any]) -> list[str]:
    root, plan = prep.run_root, prep.plan
    lines = [f"# Run report: {plan.get('name', prep.plan_path.stem)}", ""]
    facts = [f"plan: {_link(str(prep.plan_path), root)}", f"route: **{plan.get('route')}**"]
    if plan.get("method"):
        facts.append(f"method: {plan['method']}")
    if plan.get("base_model"):
        facts.append(f"base model: `{plan['base_model']}`")
    facts.append(f"resolved settings: [{RESOLVED_FILE}]({RESOLVED_FILE})")
    lines += [" · ".join(facts), "", f"Started {state.get('started', '-')}"
              + (f", finished {state['finished']}." if state.get("finished") else " (not finished)."), ""]
    return lines


def _step_table(prep: Prepared, records: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lines += ["| # | step | engine | status | wall time | headline |", "|---|---|---|---|---|---|"]
    for number, step in enumerate(prep.steps, start=1):
        record = records.get(step["id"], {})
        metrics = record.get("metrics") or {}
        headline = ", ".join(f"{k} {_fmt(v)}" for k, v in list(
            (k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))[:3])
        status = record.get("status", "not started")
        lines.append(f"| {number} | [{step['id']}](#{number}-{step['id'].replace('_', '-')}) | {step['engine']} | "
                     f"{status} | {duration(record.get('wall_s'))} | {headline or '-'} |")
    lines.append("")
    return lines


def _stops_and_todos(prep: Prepared, records: dict[str, Any]) -> list[str]:
    """Where the run stopped (with the --resume command) and the manual steps left open."""
    root = prep.run_root
    lines: list[str] = []
    open_steps = [s for s in prep.steps if records.get(s["id"], {}).get("status") == "open"]
    failed = [s for s in prep.steps if records.get(s["id"], {}).get("status") in ("failed", "running")]
    if failed:
        step = failed[0]
        lines += [f"**Stopped at `{step['id']}`**: {records[step['id']].get('error', 'interrupted')}. "
                  f"Continue with `rung run {prep.plan_path} --resume"
                  + (f" --out {root}`." if root != prep.plan_dir else "`."), ""]
    if open_steps:
        lines += ["## Open to-dos", ""]
        lines += [records[s["id"]].get("summary") or f"- [ ] {s.get('description') or s['id']}" for s in open_steps]
        lines.append("")
    return lines


def _step_section(number: int, step: dict[str, Any], record: dict[str, Any], root: Path) -> list[str]:
    """One step: what it is, how it went, its summary, outputs, metrics, samples, other documents and plots."""
    lines: list[str] = []
    run_dir = root / step["id"]
    title = f"## {number}. {step['id']}"
    lines += [title, ""]
    meta = [f"engine `{step['engine']}`"]
    if (step.get("settings") or {}).get("adapter"):
        meta.append(f"adapter `{step['settings']['adapter']}`")
    meta += [f"status **{record.get('status', 'not started')}**",
            f"wall time {duration(record.get('wall_s'))}"]
    if record.get("attempts", 1) > 1:
        meta.append(f"{record['attempts']} attempts")
    if step.get("from_step"):
        meta.append(f"starts from `{step['from_step']}`")
    lines += [" · ".join(meta), ""]
    if step.get("description"):
        lines += [f"_{step['description']}_", ""]
    if record.get("error"):
        lines += [f"Error: `{record['error'][:500]}`", ""]
    if record.get("summary") and record.get("status") != "open":
        lines += [record["summary"].rstrip(), ""]
    outs = record.get("outputs") or {}
    if outs:
        lines.append("Outputs:")
        for key, value in outs.items():
            shown = _link(value, root) if isinstance(value, str) and ("/" in value or os.sep in value) else _fmt(value)
            lines.append(f"- {key}: {shown}")
        lines.append("")
    metrics = {k: v for k, v in (record.get("metrics") or {}).items() if k != "status"}
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
        lines.append("")
    samples = outs.get("samples")
    if isinstance(samples, str) and samples.endswith(".md") and Path(samples).is_file():
        lines += _embedded_samples(Path(samples), root)
    linked = {str(Path(v).resolve()) for v in outs.values() if isinstance(v, str)}
    for doc in _step_files(run_dir, (".md",)):
        if str(doc.resolve()) not in linked:
            lines.append(f"- {_link(str(doc), root)}")
    plots = _step_files(run_dir, (".png", ".svg"))
    for plot in plots:
        rel = plot.resolve().relative_to(root.resolve()).as_posix()
        lines += ["", f"![{plot.stem}]({rel})"]
    if plots or _step_files(run_dir, (".md",)):
        lines.append("")
    return lines
