"""`rung probe`'s probe.md and probe.png: score with its 95% CI per rung, against seconds per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rung.core.fileio import atomic_write_text

LABELS = {"zero_shot": "zero-shot", "few_shot": "few-shot", "rag": "RAG", "lora_short": "short LoRA"}


def plot(evidence: dict[str, Any], path: Path) -> Path | None:
    """Score (with CI bars) per rung against seconds per row; the target as a line. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for number, (name, entry) in enumerate(evidence["rungs"].items()):
        x = entry.get("seconds_per_row") or 0.0
        low, high = entry["ci"]
        ax.errorbar([x], [entry["score"]], yerr=[[entry["score"] - low], [high - entry["score"]]], fmt="o", capsize=4)
        ax.annotate(LABELS.get(name, name), (x, entry["score"]), textcoords="offset points",
                    xytext=(6, 6 + 12 * number))  # stacked, so rungs at the same point stay readable
    ax.axhline(evidence["target"], linestyle="--", linewidth=1, color="grey")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("seconds per row (as measured; cached rows keep their first timing)")
    ax.set_xlim(left=0)
    ax.set_ylabel(f"{evidence['metric']} (95% CI)")
    ax.set_title(f"{evidence['n']} held-out rows; dashed: target {evidence['target']:.2f}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(settings: Any, inputs: Any, evidence: dict[str, Any], results: dict[str, dict[str, Any]], rows: list[dict[str, str]],
                 usage: dict[str, Any]) -> Path:
    out: Path = inputs.out_dir
    picture = plot(evidence, out / "probe.png")
    lines = [f"# Probe: `{settings.model}` on {evidence['n']} held-out rows", "",
             f"Metric `{evidence['metric']}`, target {evidence['target']:.2f}. Scores with their 95% bootstrap "
             "confidence intervals:", "",
             "| rung | score | 95% CI | seconds per row |", "|---|---|---|---|"]
    for name, entry in evidence["rungs"].items():
        seconds = entry.get("seconds_per_row")
        lines.append(f"| {LABELS.get(name, name)} | {entry['score']:.2f} | [{entry['ci'][0]:.2f}, {entry['ci'][1]:.2f}] "
                     f"| {'-' if seconds is None else f'{seconds:.3f}'} |")
    best = max(evidence["rungs"].items(), key=lambda item: item[1]["score"])
    verdict = ("reaches" if best[1]["score"] >= evidence["target"] else "stays below")
    lines += ["", f"Best: {LABELS.get(best[0], best[0])} at {best[1]['score']:.2f}, which {verdict} the target.", ""]
    if picture:
        lines += ["![score against seconds per row](probe.png)", ""]
    lines += ["Model usage this run: " + ", ".join(f"{k} {v}" for k, v in usage.items()), "",
              "Next, let the numbers decide the advice:", "", "```",
              f"rung advise --answers {inputs.answers_path or 'ANSWERS.yaml'} --evidence {out / 'evidence.yaml'}", "```", "",
              "## First rows", "", "| input | expected | " + " | ".join(LABELS.get(n, n) for n in results) + " |",
              "|---" * (2 + len(results)) + "|"]
    for i, row in enumerate(rows[:8]):
        cells = [row["input"], row["output"]] + [results[n]["outputs"][i] for n in results]
        lines.append("| " + " | ".join(" ".join(str(c).split())[:120].replace("|", "\\|") for c in cells) + " |")
    path = out / "probe.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
