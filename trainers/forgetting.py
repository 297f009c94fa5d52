"""The forgetting monitor: perplexity on held-out domain text AND on general text, before, during and after CPT.

Continued pretraining walks a tightrope: the domain perplexity should fall while the general perplexity should
not climb much (the model forgetting what it knew). Both slices are evaluated by the Trainer itself
(`eval_dataset={"domain": ..., "general": ...}`), so the numbers are exactly a direct evaluation:
perplexity = exp(mean next-token negative log-likelihood over every predicted token of the slice). With
fixed-length blocks every sample predicts the same number of tokens (block − 1), so the Trainer's per-sample
mean of the loss is the per-token mean. Distributed runs (DDP / FSDP / ZeRO) are handled by the Trainer's
own gathering. tests/trainers/test_cpt_train.py checks the figures against a hand-written loop.

The general slice that ships with rung: 15 help topics of the Python standard library (pydoc_data.topics,
PSF licence, ~45 KB of English prose about programming), chosen by a fixed rule and never used to train
builtin:tiny-base (pretraining_topics() is its complement). Pass your own with --general-text FILE.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rung.core.errors import RungError

# every fifth help topic (sorted by name, from the third), skipping the few over 20 KB
_GENERAL_EVERY, _GENERAL_FROM, _GENERAL_MAX_CHARS = 5, 2, 20_000


def _topics() -> dict[str, str]:
    import pydoc_data.topics

    return pydoc_data.topics.topics


def general_topic_names() -> list[str]:
    topics = _topics()
    return [name for i, name in enumerate(sorted(topics))
            if i % _GENERAL_EVERY == _GENERAL_FROM and len(topics[name]) <= _GENERAL_MAX_CHARS]


def pretraining_topic_names() -> list[str]:
    held_out = set(general_topic_names())
    return [name for name in sorted(_topics()) if name not in held_out]


def pretraining_topics() -> list[tuple[str, str]]:
    topics = _topics()
    return [(name, topics[name]) for name in pretraining_topic_names()]


def general_documents(general_text: str | os.PathLike | None = None) -> list[str]:
    """The general-text documents: the built-in held-out help topics, or a user's .txt file (blank-line
    separated paragraphs are kept together as one document)."""
    if general_text is None:
        topics = _topics()
        return [topics[name] for name in general_topic_names()]
    from rung.core.fileio import read_bytes

    path = Path(general_text).expanduser()
    text = read_bytes(path, what="general-text file").decode("utf-8", errors="replace")  # regular files only
    if not text.strip():
        raise RungError(f"{path}: the general-text file is empty")
    return [text]


def general_blocks(tokenizer, block_size: int, max_blocks: int, sep: int,
                   general_text: str | os.PathLike | None = None) -> list[list[int]]:
    """The general slice packed exactly like the training blocks: documents joined by the separator."""
    tokens: list[int] = []
    for document in general_documents(general_text):
        tokens += tokenizer(document, add_special_tokens=False)["input_ids"] + [sep]
        if len(tokens) >= block_size * max_blocks:
            break
    blocks = [tokens[i:i + block_size] for i in range(0, len(tokens) - block_size + 1, block_size)]
    if not blocks:
        raise RungError(f"the general text has {len(tokens)} tokens, less than one block of {block_size}")
    return blocks[:max_blocks]


def perplexity(model, blocks: list[list[int]], batch_size: int = 8) -> float:
    """exp(mean NLL per predicted token) of `blocks` under `model`, evaluated directly (no Trainer)."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            ids = torch.tensor(blocks[start:start + batch_size], dtype=torch.long, device=device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                    reduction="sum")
            total += nll.item()
            count += ids[:, 1:].numel()
    return math.exp(total / count)


def forgetting_table(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated step: domain and general perplexity side by side (step 0 = before training)."""
    rows: dict[int, dict[str, Any]] = {}
    for record in log_history:
        for name in ("domain", "general"):
            key = f"eval_{name}_loss"
            if key in record:
                row = rows.setdefault(int(record["step"]), {"step": int(record["step"])})
                row[f"{name}_loss"] = record[key]
                row[f"{name}_ppl"] = math.exp(min(record[key], 50.0))
    return [rows[step] for step in sorted(rows)]


def general_ratio(table: list[dict[str, Any]]) -> float | None:
    rows = [r for r in table if "general_ppl" in r]
    if len(rows) < 2:
        return None
    return rows[-1]["general_ppl"] / rows[0]["general_ppl"]


def warnings_for(table: list[dict[str, Any]], warn_ratio: float) -> list[str]:
    rows = [r for r in table if "general_ppl" in r]
    if len(rows) < 2:
        return []
    base, worst = rows[0], max(rows[1:], key=lambda r: r["general_ppl"])
    ratio = worst["general_ppl"] / base["general_ppl"]
    if ratio <= warn_ratio:
        return []
    return [f"general-text perplexity rose {ratio:.2f}x (from {base['general_ppl']:.2f} to "
            f"{worst['general_ppl']:.2f} at step {worst['step']}), past general_ppl_warn_ratio={warn_ratio}: "
            "the model is forgetting. Lower learning_rate, train fewer steps, use LoRA, or mix general text "
            "into the corpus (5-10% is common)."]


def table_markdown(table: list[dict[str, Any]]) -> str:
    if not table:
        return "(no evaluation ran)"
    lines = ["| step | domain ppl (held-out) | general ppl | general vs start |", "|---:|---:|---:|---:|"]
    base = next((r["general_ppl"] for r in table if "general_ppl" in r), None)
    for i, row in enumerate(table):
        label = "0 (before)" if row["step"] == 0 and i == 0 else str(row["step"])
        if i == len(table) - 1 and i > 0:
            label += " (after)"
        general = row.get("general_ppl")
        ratio = f"{general / base:.2f}x" if general and base else ""
        lines.append(f"| {label} | {row.get('domain_ppl', float('nan')):.2f} | "
                     f"{general if general is not None else float('nan'):.2f} | {ratio} |")
    return "\n".join(lines)


def ForgettingMonitor(warn_ratio: float = 1.2):  # noqa: N802 - a class made on first use (transformers late)
    return _monitor_class()(warn_ratio)


def _monitor_class():
    from transformers import TrainerCallback

    class ForgettingMonitor(TrainerCallback):
        """A TrainerCallback: after each evaluation, compare general perplexity with its first value; warn once
        per evaluation when it rose past warn_ratio. The figures themselves stay in trainer_state.log_history, so
        a resumed run keeps its "before" baseline."""

        def __init__(self, warn_ratio: float = 1.2):
            self.warn_ratio = warn_ratio
            self.warnings: list[str] = []
            self.trainer = None  # set by the pipeline: the "before" evaluation runs through it

        def on_train_begin(self, args, state, control, **kwargs):
            # The "before" evaluation runs here, once the Trainer has wrapped the model for training, and not
            # before trainer.train(): an evaluate() first leaves the model marked as prepared by accelerate
            # but not wrapped in DistributedDataParallel, and every DDP rank would then train on its own
            # (seen with transformers 5.24 + accelerate 1.15 as different gradients per rank; with the locked versions
            # tests/trainers/test_launch_train.py checks that 2 processes train as 1 does). Logged at step 0,
            # it is part of the log history that checkpoints keep, so a resumed run keeps its baseline.
            if state.global_step == 0 and self.trainer is not None:
                self.trainer.evaluate()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not metrics or not state.is_world_process_zero:
                return
            table = forgetting_table(state.log_history)
            row = table[-1] if table else {}
            if "domain_ppl" in row or "general_ppl" in row:
                if "eval_general_loss" in metrics:  # print once both slices of this evaluation are in
                    parts = [f"{name} ppl {row[name + '_ppl']:.2f}" for name in ("domain", "general")
                             if name + "_ppl" in row]
                    print(f"rung cpt: step {row['step']}: " + ", ".join(parts), flush=True)
            rows = [r for r in table if "general_ppl" in r]
            if "eval_general_loss" in metrics and len(rows) > 1:
                ratio = rows[-1]["general_ppl"] / rows[0]["general_ppl"]
                if ratio > self.warn_ratio:  # the full advice is printed once, at the end of the run
                    line = (f"rung cpt: WARNING: general perplexity is {ratio:.2f}x its start "
                            f"(past general_ppl_warn_ratio={self.warn_ratio}): the model is forgetting")
                    self.warnings.append(line)
                    print(line, flush=True)

    return ForgettingMonitor
