"""The advice as text: what `rung advise` and `rung ask` print, and the estimate table PLAN.md shows.

Pure string work, no click: cli/advise.py, advisor/questionnaire.py and advisor/plan_md.py all use it.
"""

from __future__ import annotations


def wrap(text: str, indent: int, width: int = 100, first: str | None = None) -> str:
    """Greedy word wrap (textwrap costs start-up time `rung advise` does not have)."""
    lines, line = [], first if first is not None else " " * indent
    empty = len(line)
    for word in text.split():
        if len(line) > empty and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = " " * indent + word
        else:
            line += ("" if len(line) == empty else " ") + word
    lines.append(line)
    return "\n".join(lines)


def hours(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 60:.0f} min" if value * 60 >= 1 else f"{value * 3600:.0f} s"
    if value < 1000:
        return f"{value:,.1f} h"
    return f"{value:,.0f} h"


def gpu_hours_text(value: float) -> str:
    """1,234 / 12.3 / 0.45 / 2.4e-05: a tiny run's GPU-hours keep two significant digits instead of reading 0.00."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 1 else f"{value:.2g}"


def money(value: float | None) -> str:
    """$0.38, $1,234 (cents below $100)."""
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"


def recommendation_title(result: dict) -> str:
    extra = [f"method {result['method']}" if result.get("method") else "",
             f"adapter {result['adapter']}" if result.get("adapter") else ""]
    extra = ", ".join(e for e in extra if e)
    return result["route"] + (f" ({extra})" if extra else "")


def estimate_lines(estimate: dict) -> list[str]:
    """The estimate table as text lines (advise, ask, PLAN.md share it)."""
    from rung.advisor.efficiency import like_text
    from rung.advisor.estimate_math import human_count

    if estimate.get("gpu") is None:
        return [f"  {estimate.get('note', 'no training')}"]
    gpus = f"{estimate['gpus']} GPU{'s' if estimate['gpus'] > 1 else ''}"
    rows = [
        ("training tokens", human_count(estimate["training_tokens"])),
        ("compute", f"{estimate['flops']:.2e} FLOPs" + (f"; most of it {dominant_terms(estimate)}"
                                                         if estimate.get("flops_terms") else "")),
        ("GPU-hours", f"{gpu_hours_text(estimate['gpu_hours'])} (band {gpu_hours_text(estimate['gpu_hours_low'])}-"
                      f"{gpu_hours_text(estimate['gpu_hours_high'])}) at {estimate['mfu']:.0%} MFU (band "
                      f"{estimate['mfu_low']:.0%}-{estimate['mfu_high']:.0%})"),
        ("wall-clock", f"{hours(estimate['wall_hours'])} ({hours(estimate['wall_hours_low'])}-"
                       f"{hours(estimate['wall_hours_high'])}) on {gpus}"),
        ("cost", f"{money(estimate['cost_usd'])} ({money(estimate['cost_usd_low'])}-"
                 f"{money(estimate['cost_usd_high'])}) at ${estimate['usd_per_gpu_hour']:.2f}/GPU-hour"),
        ("like", like_text(estimate["references"][0])),
        ("memory per GPU", f"{estimate['memory_gb']:.1f} GB of {estimate['gpu_memory_gb']:g} GB: "
                           f"{'fits' if estimate['fits'] else 'does NOT fit'} (micro-batch {estimate['micro_batch']}"
                           f"{', gradient checkpointing' if estimate['gradient_checkpointing'] else ', no gradient checkpointing'})"),
    ]
    lines = [f"  {name:<16} {value}" for name, value in rows]
    breakdown = estimate.get("memory_breakdown") or {}
    lines.append("  " + " " * 17 + ", ".join(f"{k} {v:.1f}" for k, v in breakdown.items() if v))
    for suggestion in estimate.get("suggestions") or []:
        lines.append(f"  {'would fit with':<16} {suggestion}")
    return lines


def dominant_terms(estimate: dict) -> str:
    """The FLOPs terms that make up most of the compute: 'sft: forward (2N) 50%, sft: backward, ... 50%'."""
    shown, total = [], 0.0
    for term in estimate["flops_terms"][:3]:
        shown.append(f"{term['term'].split(' (')[0]} {term['share']:.0%}")
        total += term["share"]
        if total >= 0.8:
            break
    return "; ".join(shown)


def render_advice(result: dict, answers_path: str | None = None, evidence_path: str | None = None) -> str:
    """Human-readable recommendation: route, why, warnings, flip when, estimate."""
    est = result["estimate"]
    model = result.get("model") or {}
    lines = [f"Recommendation: {recommendation_title(result)}", ""]
    stepped = result.get("stepped_down_from")
    if stepped:
        lines += [f"  (stepped down from {stepped['route']}: estimated {money(stepped['cost_usd'])} "
                  f"> budget {money(stepped['budget_usd'])})", ""]
    evidence = result.get("evidence")
    if evidence:
        scores = ", ".join(f"{name} {entry['score']:.2f}"
                           + (f" [{entry['ci'][0]:.2f},{entry['ci'][1]:.2f}]" if entry.get("ci") else "")
                           for name, entry in evidence["scores"].items())
        lines.append(wrap(f"Evidence ({evidence['metric']} on {evidence['n']} held-out rows, target "
                          f"{evidence['target']:.2f}): {scores}", 2, first=""))
        if evidence["prompting_result"]:
            said = (f"; it replaces your answer prompting_result: {evidence['replaced_answer']}"
                    if evidence["replaced_answer"] else "")
            lines.append(wrap(f"  -> prompting_result {evidence['prompting_result']}{said}", 2))
        lines.append("")
    lines.append("Why:")
    for rule in result["rules"]:
        lines.append(f"  - {rule['id']}:")
        lines.append(wrap(rule["because"], 6))
    if result["warnings"]:
        lines += ["", "Warnings:"]
        lines += [wrap(w, 4, first="  ! ") for w in result["warnings"]]
    if result["flip_when"]:
        lines += ["", "Flip when:"]
        lines += [wrap(f, 4, first="  - ") for f in result["flip_when"]]
    if est.get("gpu") is None:
        lines += ["", "Estimate:"] + estimate_lines(est)
        if answers_path:
            lines += ["", next_command(answers_path, evidence_path)]
        return "\n".join(lines)
    size = f"{model.get('params_b', 0):g}B" if model.get("params_b", 0) >= 0.01 else f"{model.get('params_b', 0) * 1000:.1f}M"
    source = {"config.json": "read from config.json", "gguf": "read from the GGUF header",
              "name": "from the model's name", "given": "as given",
              "default": "default size"}.get(model.get("source"), "")
    if model.get("like") and "/" in model["like"]:
        source = f"{model['like']} in rung's model catalog"
    head = f"Estimate ({size} parameters, {source}"
    head += f"; shape like {model['like']}" if model.get("like") and "/" not in model["like"] else ""
    head += f"; priced as {est.get('priced_as')})" if est.get("priced_as") else ")"
    lines += ["", head + ":"] + estimate_lines(est)
    if answers_path:
        lines += ["", next_command(answers_path, evidence_path)]
    return "\n".join(lines)


def next_command(answers_path: str, evidence_path: str | None) -> str:
    return (f"Next: rung plan --answers {answers_path}" + (f" --evidence {evidence_path}" if evidence_path else "")
            + " --out plan/")
