"""README.md in every trained folder: a model card with what the run was, instead of PEFT's blank template.

    base model · pipeline and adapter · data files with their row counts · the final numbers (loss, eval loss,
    DPO's reward margin) · the resolved settings (default < plan.yaml < flags, as resolved_config.yaml holds
    them) · the commands that use the folder

Written by common.write_metrics, so sft, dpo and cpt all get one; a rerun rewrites it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rung.core.fileio import atomic_write_text

CARD = "README.md"
RESULT_KEYS = (("first_loss", "first train loss"), ("final_loss", "final train loss"),
               ("final_eval_loss", "final eval loss"), ("eval_reward_margin", "eval reward margin (DPO)"),
               ("eval_accuracy", "eval chosen > rejected (DPO)"), ("global_step", "optimizer steps"),
               ("wall_s", "training seconds"), ("tokens_per_s", "tokens per second"))


def count_rows(path: str | None) -> str:
    """'N rows' for a JSONL file (non-empty lines), 'N files' for a folder; '' when it cannot be read."""
    if not path:
        return ""
    target = Path(path)
    try:
        if target.is_dir():
            return f"{sum(1 for p in target.rglob('*') if p.is_file())} files"
        with open(target, "rb") as handle:
            return f"{sum(1 for line in handle if line.strip())} rows"
    except OSError:
        return ""


def card_text(config: dict[str, Any], summary: dict[str, Any], folder: Path) -> str:
    settings = config.get("settings") or {}
    pipeline = str(config.get("pipeline") or config.get("engine") or summary.get("pipeline") or "training")
    base = settings.get("model_name_or_path") or summary.get("base_model") or summary.get("start")
    adapter = settings.get("adapter", "lora")
    data = [(label, config.get(key)) for key, label in (("data", "train"), ("eval_data", "eval")) if config.get(key)]
    data += [("corpus", c) for c in config.get("corpus") or []]
    lines = ["---", f"base_model: {base}", f"library_name: {'transformers' if adapter == 'full' else 'peft'}",
             f"tags: [rung, {pipeline}, {adapter}]", "---", "",
             f"# {folder.name}: {pipeline.upper()} ({adapter}) of {base}", "",
             f"Trained by rung (`rung train {pipeline}` or a `rung run` step). The base model is `{base}`"
             + ("; this folder holds a LoRA adapter on it (PEFT), with its tokenizer." if adapter != "full"
                else "; this folder holds the full fine-tuned weights (safetensors) and tokenizer."), "",
             "## Data", ""]
    for role, path in data:
        count = count_rows(path)
        lines.append(f"- {role}: `{path}`" + (f" ({count})" if count else ""))
    if not config.get("eval_data") and pipeline in ("sft", "dpo"):
        lines.append(f"- eval: {settings.get('eval_fraction', 0):.0%} of the training rows held out "
                     "(heldout.jsonl, when written)")
    lines += ["", "## Results", "", "| measure | value |", "|---|---|"]
    for key, label in RESULT_KEYS:
        value = summary.get(key)
        if value is not None:
            lines.append(f"| {label} | {round(value, 4) if isinstance(value, float) else value} |")
    lines += ["", "metrics.json holds the full log; loss.png the curve; samples.md answers before and after.", "",
              "## Settings (resolved: default < plan.yaml < flags; resolved_config.yaml)", "", "```yaml",
              yaml.safe_dump(settings, sort_keys=False, width=100).rstrip(), "```", "", "## Use", "", "```",
              f'rung generate {folder} --prompt "..."',
              f"rung gate --baseline {base} --candidate {folder} --eval EVAL.jsonl",
              f"rung export {folder} --out DIR --format safetensors   # or gguf", "```", ""]
    return "\n".join(lines)


def write_card(out_dir: Path, summary: dict[str, Any]) -> None:
    """README.md in out_dir (and in the model/adapter folders a cpt run saves inside it)."""
    from rung.core.fileio import read_yaml

    resolved = out_dir / "resolved_config.yaml"
    config = (read_yaml(resolved, what="run settings") if resolved.exists() else None) or {}
    if not isinstance(config, dict):
        config = {}
    for folder in (out_dir, out_dir / "model", out_dir / "adapter"):
        if folder == out_dir or (folder / "config.json").exists() or (folder / "adapter_config.json").exists():
            atomic_write_text(folder / CARD, card_text(config, summary, folder))
