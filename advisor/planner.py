"""`rung plan`: the recommendation turned into DIR/plan.yaml (what `rung run` executes) and DIR/PLAN.md (what people
read, rendered by advisor/plan_md.py).

Steps per route (engine names are a contract with engines/registry.py):
- prompting: prompting [+ manual collect_examples / collect_preferences]
- rag: rag_index, then rag_eval when data.queries is given, else a manual step to write eval queries
- fine_tuning: sft | dpo | sft then dpo (from_step sft) | grpo | sft then grpo (from_step sft); shorten_prompt
  first generates pairs (manual step); every trained model ends with a gate step
- continued_pretraining: cpt, then sft from_step cpt (a manual step when there is no data.train)
- bigger_model: bigger_model
Data paths are written relative to DIR so the plan folder is portable. A data file that is missing at plan time
is a warning in PLAN.md's checklist, not an error: it may be collected later.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rung.advisor.estimator import GENERATED_PAIRS
from rung.advisor.rulebook import RuleBook, load_rulebook
from rung.core.errors import RungError, did_you_mean
from rung.core.plan import DATA_ROLES, PLAN_VERSION, validate_plan
from rung.core.vocab import ENGINE_DATA

DEFAULT_BASE_MODEL = "builtin:tiny"
EFFECTIVE_BATCH = 16  # per optimizer step: micro-batch x gradient_accumulation_steps (x GPUs)
# Where the plan expects data the user has not given yet (relative to the plan folder).
DEFAULT_PATHS = {
    "train": "data/train.jsonl",
    "eval": "data/eval.jsonl",
    "preferences": "data/preferences.jsonl",
    "corpus": "data/corpus",
    "documents": "data/documents",
    "queries": "data/queries.jsonl",
    "examples": "data/examples.jsonl",
    "schema": "data/schema.json",
}

# ----------------------------------------------------------------------------------------------- data

def primary_role(route: str, method: str | None) -> str | None:
    if route == "fine_tuning":
        return "preferences" if method == "dpo" else "train"
    return {"continued_pretraining": "corpus", "rag": "documents", "prompting": "examples"}.get(route)


def parse_data(entries: list[str], route: str, method: str | None, out_dir: Path) -> dict[str, str]:
    """`ROLE=PATH` or bare `PATH` (the route's main role) -> {role: path relative to out_dir}. All problems at once."""
    data: dict[str, str] = {}
    problems: list[str] = []
    for entry in entries:
        role, sep, path = entry.partition("=")
        if not sep or os.sep in role or "/" in role or role not in DATA_ROLES and Path(entry).exists():
            role, path = "", entry
        if role and role not in DATA_ROLES:
            problems.append(f'--data {entry}: unknown role "{role}"{did_you_mean(role, DATA_ROLES)} '
                            f'(roles: {", ".join(DATA_ROLES)})')
            continue
        if not role:
            role = primary_role(route, method) or ""
            if not role:
                problems.append(f"--data {entry}: the {route} route has no main data role; write ROLE=PATH "
                                f"(roles: {', '.join(DATA_ROLES)})")
                continue
            if role in data and route == "fine_tuning" and method == "sft_then_dpo":
                role = "preferences"
        if not path:
            problems.append(f"--data {entry}: empty path")
            continue
        if role in data:
            problems.append(f"--data {entry}: {role} is given twice; use ROLE=PATH for the other file")
            continue
        data[role] = Path(os.path.relpath(Path(path).expanduser().resolve(), out_dir.resolve())).as_posix()
    if problems:
        raise RungError(problems)
    return data


def needed_roles(steps: list[dict[str, Any]]) -> list[str]:
    roles: list[str] = []
    for step in steps:
        for role in ENGINE_DATA.get(step["engine"], ()):
            if role not in roles:
                roles.append(role)
    return roles


# ----------------------------------------------------------------------------------------------- steps

def trainer_settings(kind: str, adapter: str, estimate: dict[str, Any], cpu_run: bool,
                     step_estimate: dict[str, Any] | None) -> dict[str, Any]:
    """A readable subset of SFTSettings/DPOSettings/CPTSettings (core/settings.py field names)."""
    from rung.core.resolve import unknown_keys as check_keys
    from rung.core.settings import SETTINGS_BY_ENGINE

    settings: dict[str, Any] = {"adapter": adapter}
    if adapter in ("lora", "qlora"):
        settings.update(lora_r=16, lora_alpha=32)
    if kind == "grpo":
        return _grpo_settings(settings, adapter, estimate, cpu_run, step_estimate)
    if cpu_run:
        # CPU: short sequences and one epoch keep a toy run to minutes (docs/development.md, "Measured on 2 cores").
        settings.update(max_length=256, num_train_epochs=1, per_device_train_batch_size=8,
                        gradient_accumulation_steps=1, eval_steps=20, save_steps=20, logging_steps=5)
    else:
        micro = int((step_estimate or estimate).get("micro_batch") or 1)
        gpus = max(1, int(estimate.get("gpus") or 1))
        settings.update(max_length=1024,
                        num_train_epochs={"sft": 3, "dpo": 1, "cpt": 1}[kind],
                        per_device_train_batch_size=micro,
                        gradient_accumulation_steps=max(1, EFFECTIVE_BATCH // (micro * gpus)),
                        gradient_checkpointing=bool((step_estimate or estimate).get("gradient_checkpointing")))
    if kind == "sft":
        settings["learning_rate"] = 1e-5 if adapter == "full" else 2e-4
    elif kind == "dpo":
        settings.update(beta=0.1, learning_rate=5e-7 if adapter == "full" else 5e-5)
    else:
        settings["learning_rate"] = 2e-5 if adapter == "full" else 1e-4
    problems = check_keys(SETTINGS_BY_ENGINE[kind], settings, f"{kind} settings")
    if problems:  # a bug in this file, not the user's input
        raise RungError(problems)
    return settings


def _grpo_settings(settings: dict[str, Any], adapter: str, estimate: dict[str, Any], cpu_run: bool,
                   step_estimate: dict[str, Any] | None) -> dict[str, Any]:
    """GRPOSettings for the plan. A step holds per_device_train_batch_size completions, num_generations per prompt:
    GPU 8 completions x 4 accumulation = 32 = 4 prompts of 8 per optimizer step per GPU; CPU 8 x 1 = 2 prompts of 4,
    30 steps, 64-token completions (a toy run of minutes)."""
    if cpu_run:
        settings.update(num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                        max_completion_length=64, num_train_epochs=1, max_steps=30, logging_steps=1, save_steps=10)
    else:
        settings.update(num_generations=8, per_device_train_batch_size=8, gradient_accumulation_steps=4,
                        max_completion_length=256, num_train_epochs=1,
                        gradient_checkpointing=bool((step_estimate or estimate).get("gradient_checkpointing")))
    settings["learning_rate"] = 1e-6 if adapter == "full" else 1e-5
    return settings


def build_steps(advice: dict[str, Any], answers: dict[str, Any], data: dict[str, str], cpu_run: bool,
                book: RuleBook) -> list[dict[str, Any]]:
    """The plan's steps for the advice's route; collect steps name the rule book's thresholds. A route that
    trains a chat model ends in a gate step."""
    by_route = {"prompting": _prompting_steps, "rag": _rag_steps, "fine_tuning": _fine_tuning_steps,
                "continued_pretraining": _cpt_steps}
    route = advice["route"]
    if route in by_route:
        steps = by_route[route](advice, answers, data, cpu_run, book)
    else:
        steps = [{"id": "bigger_model", "engine": "bigger_model",
                  "description": "Shortlist bigger or stronger open models that fit your GPUs and compare them",
                  "settings": {}}]
    tuned = [step["id"] for step in steps if step["engine"] in ("sft", "dpo", "grpo")]
    if tuned:  # a trained chat model ships only if it beats the cheaper rung on held-out rows
        steps.append({"id": "gate", "engine": "gate", "from_step": tuned[-1],
                      "description": "Ship gate: the trained model against the base model with its best prompt, on "
                                     "held-out rows (data.eval, else the rows training held out)",
                      "settings": {"max_rows": 20, "max_new_tokens": 64} if cpu_run else {}})
    return steps


def _prompting_steps(advice: dict[str, Any], answers: dict[str, Any], data: dict[str, str], cpu_run: bool,
                 book: RuleBook) -> list[dict[str, Any]]:
    examples, pairs = book.show("min_labeled_examples"), book.show("min_preference_pairs")
    steps: list[dict[str, Any]] = []
    settings: dict[str, Any] = {"num_examples": 4}
    if cpu_run:
        settings.update(max_eval_examples=20, max_new_tokens=64)
    steps.append({"id": "prompting", "engine": "prompting",
                  "description": _prompting_description(answers), "settings": settings})
    if advice.get("collect") == "examples":
        have = answers["labeled_examples"]
        steps.append({"id": "collect_examples", "engine": "manual",
                      "description": f"Collect labelled (input, ideal output) examples: {have} on hand, {examples} "
                                     "needed before fine-tuning (then re-run rung advise)",
                      "settings": {"done_when": f"data/train.jsonl holds {examples}+ examples"}})
    if advice.get("collect") == "preferences":
        have = answers["preference_pairs"]
        steps.append({"id": "collect_preferences", "engine": "manual",
                      "description": f"Collect preference pairs (prompt, chosen, rejected) from reviewers: "
                                     f"{have} on hand, {pairs} needed for DPO",
                      "settings": {"done_when": f"data/preferences.jsonl holds {pairs}+ pairs"}})
    return steps


def _rag_steps(advice: dict[str, Any], answers: dict[str, Any], data: dict[str, str], cpu_run: bool,
                 book: RuleBook) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    steps.append({"id": "index", "engine": "rag_index",
                  "description": "Chunk, embed and index the documents" +
                                 (" (the domain corpus)" if advice.get("corpus_as_documents") else ""),
                  # chunk_tokens 0 = automatic: 128 word pieces for MiniLM, which beat its 256-piece limit
                  # on both labelled sets (BENCHMARKS.md)
                  "settings": {"chunk_tokens": 0, "overlap": 16}})
    if "queries" in data:
        steps.append({"id": "eval", "engine": "rag_eval",
                      "description": "Retrieval quality (recall@k, nDCG@10, MRR) on the eval queries"})
    else:
        steps.append({"id": "write_eval_queries", "engine": "manual",
                      "description": "Write 30+ real questions with the documents that answer them "
                                     "(data/queries.jsonl), then add data.queries and an eval step "
                                     "(rung plan --data queries=PATH)",
                      "settings": {"done_when": "data/queries.jsonl holds 30+ queries with relevant ids"}})
    return steps


def _fine_tuning_steps(advice: dict[str, Any], answers: dict[str, Any], data: dict[str, str], cpu_run: bool,
                 book: RuleBook) -> list[dict[str, Any]]:
    method, adapter, est = advice.get("method"), advice.get("adapter") or "lora", advice["estimate"]
    by_step = {s["step"]: s for s in est.get("steps") or []}
    steps: list[dict[str, Any]] = []
    if advice.get("generate_pairs") and not answers["labeled_examples"]:
        steps.append({"id": "generate_pairs", "engine": "manual",
                      "description": f"Run today's long prompt on {GENERATED_PAIRS:,} real inputs and save (input, "
                                     "output) pairs to data/train.jsonl; the fine-tuned model learns to answer "
                                     "without the prompt",
                      "settings": {"done_when": f"data/train.jsonl holds {GENERATED_PAIRS:,} generated pairs"}})
    if method in ("sft", "sft_then_dpo", "sft_then_grpo"):
        steps.append({"id": "sft", "engine": "sft", "description": "Supervised fine-tuning",
                      "settings": trainer_settings("sft", adapter, est, cpu_run, by_step.get("sft"))})
    if method in ("dpo", "sft_then_dpo"):
        step = {"id": "dpo", "engine": "dpo", "description": "Preference tuning with DPO",
                "settings": trainer_settings("dpo", adapter, est, cpu_run, by_step.get("dpo"))}
        if method == "sft_then_dpo":
            step = {"id": "dpo", "engine": "dpo", "description": step["description"] + " on the SFT model",
                    "from_step": "sft", "settings": step["settings"]}
        steps.append(step)
    if method in ("grpo", "sft_then_grpo"):
        step = {"id": "grpo", "engine": "grpo",
                "description": "Reinforcement with your checker's score as the reward (GRPO), the metric the "
                               "gate scores with" + (", on the SFT model" if method == "sft_then_grpo" else ""),
                "settings": trainer_settings("grpo", adapter, est, cpu_run, by_step.get("grpo"))}
        if method == "sft_then_grpo":
            step = {**step, "from_step": "sft"}
        steps.append(step)
    return steps


def _cpt_steps(advice: dict[str, Any], answers: dict[str, Any], data: dict[str, str], cpu_run: bool,
                 book: RuleBook) -> list[dict[str, Any]]:
    examples = book.show("min_labeled_examples")
    adapter, est = advice.get("adapter") or "lora", advice["estimate"]
    by_step = {s["step"]: s for s in est.get("steps") or []}
    steps: list[dict[str, Any]] = []
    steps.append({"id": "cpt", "engine": "cpt", "description": "Continued pretraining on the domain corpus",
                  "settings": trainer_settings("cpt", adapter, est, cpu_run, by_step.get("cpt"))})
    if "train" in data or answers["labeled_examples"]:
        steps.append({"id": "sft", "engine": "sft", "from_step": "cpt",
                      "description": "SFT on instruction data to restore instruction following after CPT",
                      "settings": trainer_settings("sft", "lora" if adapter == "full" else adapter, est, cpu_run,
                                                   by_step.get("sft"))})
    else:
        steps.append({"id": "collect_instructions", "engine": "manual",
                      "description": f"Collect {examples}+ instruction examples (data/train.jsonl) and add an sft "
                                     "step with from_step: cpt; CPT erodes instruction following and SFT restores it",
                      "settings": {"done_when": f"data/train.jsonl holds {examples}+ examples"}})
    return steps


def use_metric(steps: list[dict[str, Any]], metric: str, out_dir: Path) -> None:
    """`rung plan --metric FILE.py:NAME`: the steps that score answers (prompting, gate) use the user's metric,
    its file written relative to the plan's folder (engines resolve it from there). Not imported here."""
    from rung.core.user_metric import is_user_metric, split_spec

    if not is_user_metric(metric):
        raise RungError(f"--metric {metric}: expected FILE.py:NAME, a function in your own Python file")
    path, name = split_spec(metric)
    if not path.is_file():
        raise RungError(f"--metric {metric}: no such file")
    relative = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    scoring = [step for step in steps if step["engine"] in ("prompting", "gate")]
    if not scoring:
        raise RungError(f"--metric {metric}: this plan has no step that scores answers (prompting or gate)")
    for step in scoring:
        step.setdefault("settings", {})["metric"] = f"{relative}:{name}"


PROMPTING_DESCRIPTIONS = {  # goal -> the prompting step's description
    "schema": "System prompt + few-shot examples; enforce the schema with structured outputs / constrained decoding",
    "shorten_prompt": "Trim the prompt and cache its fixed prefix (prompt caching); measure quality on the eval set",
    "preferences": "System prompt + the best-rated answers as few-shot examples",
}


def _prompting_description(answers: dict[str, Any]) -> str:
    return PROMPTING_DESCRIPTIONS.get(answers["goal"], "System prompt + few-shot examples, scored on the eval set")


# ----------------------------------------------------------------------------------------------- plan

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plan"


def build_plan(answers: dict[str, Any], out_dir: str | Path, *, base_model: str | None = None,
               data: list[str] | None = None, evidence: dict[str, Any] | None = None,
               metric: str | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(plan, advice, context for PLAN.md). Nothing is written. With evidence, its derived prompting_result is
    what the steps and PLAN.md work from; plan.yaml keeps the answers as given and records the evidence."""
    from rung.advisor.rules import advise

    out = Path(out_dir)
    effective = dict(answers)
    if base_model:
        effective["base_model"] = base_model
    book = load_rulebook()
    advice = advise(effective, book, evidence=evidence)
    given_answers = answers
    if advice.get("evidence") and advice["evidence"]["prompting_result"]:
        answers = {**answers, "prompting_result": advice["evidence"]["prompting_result"]}
    model = effective.get("base_model") or DEFAULT_BASE_MODEL
    defaulted_model = not effective.get("base_model")
    cpu_run = model.startswith("builtin:") or not (answers["gpu_count"] > 0 and answers["gpu_memory_gb"] > 0)
    data_map = parse_data(list(data or []), advice["route"], advice.get("method"), out)
    if advice.get("corpus_as_documents") and "corpus" in data_map and "documents" not in data_map:
        data_map["documents"] = data_map["corpus"]
    steps = build_steps(advice, answers, data_map, cpu_run, book)
    if metric is not None:
        use_metric(steps, metric, out)
    toy_lora = model.startswith("builtin:") and advice.get("adapter") == "qlora"
    if toy_lora:  # 4-bit bitsandbytes needs CUDA; the offline toy runs anywhere with plain LoRA
        for step in steps:
            if (step.get("settings") or {}).get("adapter") == "qlora":
                step["settings"]["adapter"] = "lora"
    defaulted_roles = []
    for role in needed_roles(steps):
        if role not in data_map:
            data_map[role] = DEFAULT_PATHS[role]
            defaulted_roles.append(role)
    plan = {
        "version": PLAN_VERSION,
        "name": _slug(out.resolve().name if out.name else f"{answers['goal']}-{advice['route']}"),
        "goal": answers["goal"],
        "route": advice["route"],
        "method": advice.get("method"),
        "adapter": advice.get("adapter"),
        "base_model": model,
        "data": data_map,
        "steps": steps,
        "estimate": _plain(advice["estimate"]),
        "rules": advice["rules"],
        "warnings": list(advice["warnings"]),
        "flip_when": advice["flip_when"],
        "answers": dict(given_answers, **({"base_model": base_model} if base_model else {})),
    }
    if advice.get("evidence"):
        plan["evidence"] = _plain(advice["evidence"])
    # Only steps that load the base model care which it is (rag_index/rag_eval use the embedder, manual nothing).
    if defaulted_model and any(step["engine"] in ("prompting", "sft", "dpo", "grpo", "cpt", "bigger_model") for step in steps):
        plan["warnings"].append(f"No base_model given: the plan uses {DEFAULT_BASE_MODEL} (an offline toy) so "
                                "`rung run` works anywhere; pass --base-model ID_OR_PATH for real results.")
    if toy_lora:
        plan["warnings"].append(f"The recommendation is QLoRA for your model; the steps use plain LoRA because "
                                f"{model} is the offline toy and 4-bit loading needs a CUDA GPU.")
    if cpu_run and advice["route"] in ("fine_tuning", "continued_pretraining"):
        plan["warnings"].append("Training settings are sized for a CPU run (max_length 256, 1 epoch): "
                                f"{'builtin:tiny is a toy' if model.startswith('builtin:') else 'no GPU was given'}; "
                                "re-plan with gpu_memory_gb and gpu_count for GPU-sized settings.")
    problems = validate_plan(plan, where=str(out / "plan.yaml"))
    if problems:  # a planner bug: never write a plan `rung run` would reject
        raise RungError(problems)
    context = {"out": out, "cpu_run": cpu_run, "defaulted_model": defaulted_model, "defaulted_roles": defaulted_roles,
               "book": book}
    return plan, advice, context


def _plain(value: Any) -> Any:
    """Round floats so plan.yaml stays readable."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_plan(answers: dict[str, Any], out_dir: str | Path, *, base_model: str | None = None,
               data: list[str] | None = None, evidence: dict[str, Any] | None = None,
               metric: str | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """Write DIR/plan.yaml and DIR/PLAN.md (atomically, plan built and checked first). Returns their paths and the plan."""
    from rung.advisor.plan_md import render_plan_md
    from rung.core.fileio import atomic_write_text, atomic_write_yaml

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RungError(f"--out {out}: exists and is not a folder")
    plan, advice, context = build_plan(answers, out, base_model=base_model, data=data, evidence=evidence,
                                       metric=metric)
    markdown = render_plan_md(plan, advice, context)
    plan_path, md_path = out / "plan.yaml", out / "PLAN.md"
    atomic_write_yaml(plan_path, plan)
    atomic_write_text(md_path, markdown)
    return plan_path, md_path, plan
