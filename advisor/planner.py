"""`rung plan`: the recommendation turned into DIR/plan.yaml (what `rung run` executes) and DIR/PLAN.md (what people read).

Steps per route (engine names are a contract with engines/registry.py):
- prompting: prompting [+ manual collect_examples / collect_preferences]
- rag: rag_index, then rag_eval when data.queries is given, else a manual step to write eval queries
- fine_tuning: sft | dpo | sft then dpo (from_step sft); shorten_prompt first generates pairs (manual step)
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

from rung.core.errors import RungError, did_you_mean
from rung.core.plan import DATA_ROLES, PLAN_VERSION, validate_plan

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
HOW_MUCH = {
    "train": "at least 100 (input, ideal output) examples; 1,000+ is better",
    "eval": "50-200 held-out examples, never trained on",
    "preferences": "at least 200 pairs (prompt, chosen, rejected)",
    "corpus": "at least 50M tokens for continued pretraining (~200 MB of text)",
    "documents": "every document the answers may come from",
    "queries": "30+ real questions, each with the ids of the documents that answer it",
    "examples": "5-20 good (input, output) examples; the first few go into the prompt",
    "schema": "one JSON Schema file",
}
FORMATS = {
    "train": '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]} '
             'or {"prompt": ..., "completion": ...} per JSONL line',
    "eval": "same shape as train",
    "preferences": '{"prompt": ..., "chosen": ..., "rejected": ...} per JSONL line',
    "corpus": ".txt / .md files in a folder, or JSONL with a \"text\" field",
    "documents": "a folder of .txt / .md / .pdf files",
    "queries": '{"query": ..., "relevant": ["doc id", ...]} per JSONL line, or BEIR qrels TSV',
    "examples": '{"input": ..., "output": ...} per JSONL line',
    "schema": "JSON Schema (draft 2020-12)",
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
    needs = {"prompting": ["examples"], "rag_index": ["documents"], "rag_eval": ["queries"], "sft": ["train"],
             "dpo": ["preferences"], "cpt": ["corpus"]}
    roles: list[str] = []
    for step in steps:
        for role in needs.get(step["engine"], []):
            if role not in roles:
                roles.append(role)
    return roles


# ----------------------------------------------------------------------------------------------- steps

def trainer_settings(kind: str, adapter: str, estimate: dict[str, Any], cpu_run: bool,
                     step_estimate: dict[str, Any] | None) -> dict[str, Any]:
    """A readable subset of SFTSettings/DPOSettings/CPTSettings (trainers/settings.py field names)."""
    from rung.core.settings import SETTINGS_BY_ENGINE, check_keys

    settings: dict[str, Any] = {"adapter": adapter}
    if adapter in ("lora", "qlora"):
        settings.update(lora_r=16, lora_alpha=32)
    if cpu_run:
        # CPU: short sequences and one epoch keep a toy run to minutes (shared/ENVIRONMENT.md timings).
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


def build_steps(advice: dict[str, Any], answers: dict[str, Any], data: dict[str, str], cpu_run: bool) -> list[dict[str, Any]]:
    route, method, adapter = advice["route"], advice.get("method"), advice.get("adapter") or "lora"
    est = advice["estimate"]
    by_step = {s["step"]: s for s in est.get("steps") or []}
    steps: list[dict[str, Any]] = []
    if route == "prompting":
        settings: dict[str, Any] = {"num_examples": 4}
        if cpu_run:
            settings.update(max_eval_examples=20, max_new_tokens=64)
        steps.append({"id": "prompting", "engine": "prompting",
                      "description": _prompting_description(answers), "settings": settings})
        if advice.get("collect") == "examples":
            have = answers["labeled_examples"]
            steps.append({"id": "collect_examples", "engine": "manual",
                          "description": f"Collect labelled (input, ideal output) examples: {have} on hand, 100 "
                                         "needed before fine-tuning (then re-run rung advise)",
                          "settings": {"done_when": "data/train.jsonl holds 100+ examples"}})
        if advice.get("collect") == "preferences":
            have = answers["preference_pairs"]
            steps.append({"id": "collect_preferences", "engine": "manual",
                          "description": f"Collect preference pairs (prompt, chosen, rejected) from reviewers: "
                                         f"{have} on hand, 200 needed for DPO",
                          "settings": {"done_when": "data/preferences.jsonl holds 200+ pairs"}})
    elif route == "rag":
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
    elif route == "fine_tuning":
        if advice.get("generate_pairs") and not answers["labeled_examples"]:
            steps.append({"id": "generate_pairs", "engine": "manual",
                          "description": "Run today's long prompt on 2,000 real inputs and save (input, output) pairs "
                                         "to data/train.jsonl; the fine-tuned model learns to answer without the prompt",
                          "settings": {"done_when": "data/train.jsonl holds 2,000 generated pairs"}})
        if method in ("sft", "sft_then_dpo"):
            steps.append({"id": "sft", "engine": "sft", "description": "Supervised fine-tuning",
                          "settings": trainer_settings("sft", adapter, est, cpu_run, by_step.get("sft"))})
        if method in ("dpo", "sft_then_dpo"):
            step = {"id": "dpo", "engine": "dpo", "description": "Preference tuning with DPO",
                    "settings": trainer_settings("dpo", adapter, est, cpu_run, by_step.get("dpo"))}
            if method == "sft_then_dpo":
                step = {"id": "dpo", "engine": "dpo", "description": step["description"] + " on the SFT model",
                        "from_step": "sft", "settings": step["settings"]}
            steps.append(step)
    elif route == "continued_pretraining":
        steps.append({"id": "cpt", "engine": "cpt", "description": "Continued pretraining on the domain corpus",
                      "settings": trainer_settings("cpt", adapter, est, cpu_run, by_step.get("cpt"))})
        if "train" in data or answers["labeled_examples"]:
            steps.append({"id": "sft", "engine": "sft", "from_step": "cpt",
                          "description": "SFT on instruction data to restore instruction following after CPT",
                          "settings": trainer_settings("sft", "lora" if adapter == "full" else adapter, est, cpu_run,
                                                       by_step.get("sft"))})
        else:
            steps.append({"id": "collect_instructions", "engine": "manual",
                          "description": "Collect 100+ instruction examples (data/train.jsonl) and add an sft step "
                                         "with from_step: cpt; CPT erodes instruction following and SFT restores it",
                          "settings": {"done_when": "data/train.jsonl holds 100+ examples"}})
    else:
        steps.append({"id": "bigger_model", "engine": "bigger_model",
                      "description": "Shortlist bigger or stronger open models that fit your GPUs and compare them",
                      "settings": {}})
    return steps


def _prompting_description(answers: dict[str, Any]) -> str:
    goal = answers["goal"]
    if goal == "schema":
        return "System prompt + few-shot examples; enforce the schema with structured outputs / constrained decoding"
    if goal == "shorten_prompt":
        return "Trim the prompt and cache its fixed prefix (prompt caching); measure quality on the eval set"
    if goal == "preferences":
        return "System prompt + the best-rated answers as few-shot examples"
    return "System prompt + few-shot examples, scored on the eval set"


# ----------------------------------------------------------------------------------------------- plan

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plan"


def build_plan(answers: dict[str, Any], out_dir: str | Path, *, base_model: str | None = None,
               data: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(plan, advice, context for PLAN.md). Nothing is written."""
    from rung.advisor.rules import advise

    out = Path(out_dir)
    effective = dict(answers)
    if base_model:
        effective["base_model"] = base_model
    advice = advise(effective)
    model = effective.get("base_model") or DEFAULT_BASE_MODEL
    defaulted_model = not effective.get("base_model")
    cpu_run = model.startswith("builtin:") or not (answers["gpu_count"] > 0 and answers["gpu_memory_gb"] > 0)
    data_map = parse_data(list(data or []), advice["route"], advice.get("method"), out)
    if advice.get("corpus_as_documents") and "corpus" in data_map and "documents" not in data_map:
        data_map["documents"] = data_map["corpus"]
    steps = build_steps(advice, answers, data_map, cpu_run)
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
        "answers": dict(answers, **({"base_model": base_model} if base_model else {})),
    }
    # Only steps that load the base model care which it is (rag_index/rag_eval use the embedder, manual nothing).
    if defaulted_model and any(step["engine"] in ("prompting", "sft", "dpo", "cpt", "bigger_model") for step in steps):
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
    context = {"out": out, "cpu_run": cpu_run, "defaulted_model": defaulted_model, "defaulted_roles": defaulted_roles}
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
               data: list[str] | None = None) -> tuple[Path, Path, dict[str, Any]]:
    """Write DIR/plan.yaml and DIR/PLAN.md (atomically, plan built and checked first). Returns their paths and the plan."""
    from rung.core.fileio import atomic_write_text, atomic_write_yaml

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RungError(f"--out {out}: exists and is not a folder")
    plan, advice, context = build_plan(answers, out, base_model=base_model, data=data)
    markdown = render_plan_md(plan, advice, context)
    plan_path, md_path = out / "plan.yaml", out / "PLAN.md"
    atomic_write_yaml(plan_path, plan)
    atomic_write_text(md_path, markdown)
    return plan_path, md_path, plan


# ----------------------------------------------------------------------------------------------- PLAN.md

GOAL_TEXT = {
    "style": "change the model's tone, format or style",
    "facts": "give the model current or private facts",
    "schema": "make the model hit a strict output schema every time",
    "domain_task": "specialize the model on a narrow domain task",
    "shorten_prompt": "cut the tokens and latency of a huge prompt",
    "new_capability": "teach the model a fundamentally new capability",
    "domain_language": "make the model fluent in a specialized domain's language",
    "preferences": "make answers better than the demonstrations / match human rankings",
}
LADDER = ("prompting", "rag", "fine_tuning", "continued_pretraining", "bigger_model")


def why_not(rung: str, plan: dict[str, Any], answers: dict[str, Any]) -> str:
    """One line on why a rung of the ladder was not chosen (or that it was)."""
    route, goal, result = plan["route"], answers["goal"], answers["prompting_result"]
    if rung == route:
        return "**chosen**"
    if rung == "prompting":
        if goal == "facts":
            return "a prompt cannot hold a knowledge base that changes or is private; retrieval fetches what each question needs"
        if goal == "new_capability" or result == "fails":
            return "even the best prompt cannot half-do the task: the skill is missing"
        if goal == "domain_language":
            return "the domain's language needs more text than fits in a prompt"
        if goal == "shorten_prompt":
            return f"the prompt itself is the cost: {answers['prompt_tokens'] * answers['requests_per_day']:,} prompt tokens a day"
        if goal == "preferences":
            return f"{answers['preference_pairs']:,} preference pairs are enough to train on rankings directly"
        return "your best prompt is inconsistent"
    if rung == "rag":
        if goal == "domain_language":
            return "retrieval adds passages to the context; fluency in the domain's language needs the weights to change"
        return "retrieval adds facts, not behaviour; this goal is about how the model answers"
    if rung == "fine_tuning":
        if goal == "facts":
            return "a poor, expensive way to add knowledge that changes, and prone to confident errors"
        if route == "bigger_model":
            return "fine-tuning amplifies abilities the base model has; it rarely creates new ones"
        if route == "continued_pretraining":
            return "comes after CPT in this plan (SFT restores instruction following)"
        if any(r["id"].startswith("budget-") for r in plan.get("rules") or []):
            return "over budget (see the budget rule above)"
        if goal == "shorten_prompt":
            return "below 10M prompt tokens a day, prompt caching is cheaper"
        if goal == "preferences":
            return f"DPO needs 200+ preference pairs (you have {answers['preference_pairs']:,})"
        if result in ("untried", "good_enough"):
            return f"prompting is {result.replace('_', ' ')}: climb only with evidence that it is inconsistent"
        return f"needs 100+ labelled examples (you have {answers['labeled_examples']:,})"
    if rung == "continued_pretraining":
        if goal != "domain_language":
            return "only for fluency in a domain's language, with 50M+ tokens of domain text"
        return (f"needs 50M+ tokens of domain text (you have {answers['domain_corpus_tokens']:,})"
                if answers["domain_corpus_tokens"] < 50_000_000 else "over budget (see the budget rule above)")
    if goal == "facts":
        return "a bigger model still does not know your private or latest facts"
    return f"only when even the best prompt fails or the skill is new (prompting result: {result.replace('_', ' ')})"


def _commands(plan: dict[str, Any], context: dict[str, Any]) -> list[str]:
    """The exact commands for this plan: data checks for training data, a dry run, the run."""
    out: Path = context["out"]
    plan_file = (out / "plan.yaml").as_posix()
    data = plan.get("data") or {}
    lines = []
    checks = {"sft": ("train", "sft"), "dpo": ("preferences", "dpo")}
    for step in plan["steps"]:
        role_kind = checks.get(step["engine"])
        if role_kind and isinstance(data.get(role_kind[0]), str):
            path = Path(os.path.normpath(out / data[role_kind[0]])).as_posix()
            max_length = (step.get("settings") or {}).get("max_length", 1024)
            line = (f"rung data check {path} --kind {role_kind[1]} --base-model {plan['base_model']} "
                    f"--max-length {max_length}")
            if line not in lines:
                lines.append(line + f"   # step {step['id']}: every bad row with its line, token counts")
    lines.append(f"rung run {plan_file} --dry-run   # check the plan, print the resolved settings")
    lines.append(f"rung run {plan_file}             # run every step; --resume continues an interrupted run")
    return lines


def _data_checklist(plan: dict[str, Any], context: dict[str, Any]) -> list[str]:
    out: Path = context["out"]
    lines = ["| role | path | format | how much | status |", "|---|---|---|---|---|"]
    warnings = []
    for role, value in (plan.get("data") or {}).items():
        paths = value if isinstance(value, list) else [value]
        # lexical join: the plan folder may not exist yet, and "plan/../docs" does not resolve through it
        missing = [p for p in paths if not Path(os.path.normpath(out / p)).exists()]
        status = "found" if not missing else ("**missing**: put it there or re-plan with `--data " + role + "=PATH`")
        if missing:
            warnings.append(f"{role}: {', '.join(missing)} does not exist yet (relative to {out})")
        lines.append(f"| {role} | `{', '.join(paths)}` | {FORMATS[role]} | {HOW_MUCH[role]} | {status} |")
    if warnings:
        lines += ["", "Warnings:"] + [f"- {w}" for w in warnings]
    return lines


RISKS = {
    "prompting": ["Prompts drift when the model version changes: pin the model and keep the eval set.",
                  "Few-shot examples cost tokens on every request."],
    "rag": ["Retrieval misses are silent: measure recall on real queries before judging the answers.",
            "Chunks that split a table or a definition lose meaning: check a sample of chunks.",
            "Access control: filter retrieved documents by the user's permissions."],
    "fine_tuning": ["Overfitting on a small set: watch the eval loss and stop when it rises.",
                    "Catastrophic forgetting: keep a general eval set and compare before and after.",
                    "The model learns the labels' mistakes: review a sample of the training data first."],
    "continued_pretraining": ["Forgetting general skills and instruction following: the SFT step and a general "
                              "perplexity check guard it.",
                              "Tokenizer mismatch: a domain with many unseen words trains slower."],
    "bigger_model": ["Serving cost and latency grow with size: measure tokens/s on your hardware.",
                     "Licences differ between model families: read the licence before shipping."],
}
EVALUATE = {
    "prompting": "Score the prompt on 50-200 held-out examples (data/eval.jsonl): exact match or schema validity for "
                 "formats, a rubric for style. The prompting step reports adherence against its target (90%).",
    "rag": "Measure retrieval first (recall@k, nDCG@10, MRR on data/queries.jsonl), then answer quality on the same "
           "questions; compare with the model answering without retrieval.",
    "fine_tuning": "Hold out 10% (eval_fraction) or give data/eval.jsonl; compare the fine-tuned model with the base "
                   "model prompted with few-shot examples on the same eval set; for DPO watch rewards/accuracies "
                   "and rewards/margins.",
    "continued_pretraining": "Perplexity on held-out domain text should fall; perplexity on general text should not "
                             "rise by more than 20% (general_ppl_warn_ratio); then evaluate the SFT model on tasks.",
    "bigger_model": "Run the same eval set on each shortlisted model and the current one; keep the smallest that "
                    "meets the bar.",
}


def render_plan_md(plan: dict[str, Any], advice: dict[str, Any], context: dict[str, Any]) -> str:
    from rung.advisor.commands import estimate_lines, recommendation_title

    answers = plan["answers"]
    out: Path = context["out"]
    plan_file = (out / "plan.yaml").as_posix()
    title = recommendation_title(plan)
    md = [f"# Plan: {plan['name']}", ""]
    md += ["## Goal", "", f"You want to {GOAL_TEXT[answers['goal']]}."]
    facts = [f"prompting so far: {answers['prompting_result'].replace('_', ' ')}"]
    for key, label in (("labeled_examples", "labelled examples"), ("preference_pairs", "preference pairs"),
                       ("domain_corpus_tokens", "tokens of domain text")):
        if answers.get(key):
            facts.append(f"{answers[key]:,} {label}")
    if answers.get("gpu_count") and answers.get("gpu_memory_gb"):
        facts.append(f"{answers['gpu_count']} GPU(s) with {answers['gpu_memory_gb']:g} GB each")
    else:
        facts.append("no GPU given")
    if answers.get("budget_usd") is not None:
        facts.append(f"budget ${answers['budget_usd']:,.0f}")
    md += ["", "What you told rung: " + "; ".join(facts) + ".", ""]
    md += ["## Recommendation", "", f"**{title}** on base model `{plan['base_model']}`.", ""]
    if advice.get("stepped_down_from"):
        s = advice["stepped_down_from"]
        md += [f"Stepped down from **{s['route']}**: estimated ${s['cost_usd']:,.2f} is over the ${s['budget_usd']:,.2f} budget.", ""]
    md += ["Why (rules that fired, in order):", ""]
    md += [f"- `{r['id']}`: {r['because']}" for r in plan["rules"]]
    if plan["warnings"]:
        md += ["", "Warnings:", ""] + [f"- {w}" for w in plan["warnings"]]
    if plan["flip_when"]:
        md += ["", "What would change this answer:", ""] + [f"- {f}" for f in plan["flip_when"]]
    md += ["", "## Rungs considered", "", "| rung | verdict |", "|---|---|"]
    md += [f"| {rung} | {why_not(rung, plan, answers)} |" for rung in LADDER]
    md += ["", "## Steps", "", f"`rung run {plan_file}` runs these in order (`--dry-run` first checks the plan and "
           "prints the resolved settings; `--resume` continues an interrupted run):", ""]
    for index, step in enumerate(plan["steps"], start=1):
        origin = f" (starts from step `{step['from_step']}`'s model)" if step.get("from_step") else ""
        md.append(f"{index}. `{step['id']}` — engine `{step['engine']}`{origin}: {step.get('description', '')}")
        if step["engine"] == "manual":
            md.append("   - a to-do for you: `rung run` lists it as open and moves on")
        elif step.get("settings"):
            shown = ", ".join(f"{k}={v}" for k, v in step["settings"].items())
            md.append(f"   - settings: {shown}")
            md.append(f"   - override one: `rung run {plan_file} --set {step['id']}.KEY=VALUE`")
    md += ["", "Commands, in order:", "", "```"] + _commands(plan, context) + ["```"]
    if context["cpu_run"] and plan["route"] in ("fine_tuning", "continued_pretraining"):
        md += ["", "These training settings are sized for a **CPU run** (max_length 256, 1 epoch, small batches): "
               + ("the base model is the offline toy `builtin:tiny`." if plan["base_model"].startswith("builtin:")
                  else "no GPU was given.") + " Re-plan with a real base model and your GPUs for full-size settings."]
    md += ["", "## Data checklist", ""] + _data_checklist(plan, context)
    md += ["", "## Cost, time and memory", ""]
    est = plan["estimate"]
    model = advice.get("model") or {}
    size = model.get("params_b", 0)
    shown = f"{size:g}B" if size >= 0.01 else f"{size * 1000:.1f}M"
    md.append(f"For a {shown}-parameter model ({model.get('source', '')}"
              + (f", shaped like {model['like']}" if model.get("like") else "") + ")"
              + (f", not {plan['base_model']} itself, which runs in minutes on a CPU" if context["defaulted_model"]
                 else "") + ".")
    md += ["", "```"] + estimate_lines(advice["estimate"]) + ["```"]
    if est.get("assumptions"):
        md += ["", "Assumptions: " + "; ".join(est["assumptions"]) + "."]
    if est.get("steps") and len(est["steps"]) > 1:
        md += ["", "| step | method | tokens | GPU-hours | cost | memory/GPU |", "|---|---|---|---|---|---|"]
        for s in est["steps"]:
            md.append(f"| {s['step']} | {s['method']} ({s['adapter']}) | {s['tokens']:,.0f} | {s['gpu_hours']:,.2f} | "
                      f"${s['cost_usd']:,.2f} | {s['memory_gb']:.1f} GB |")
    md += ["", f"Re-estimate with other numbers: `rung estimate --params-b {est.get('params_b', 7):g} --tokens N --gpu NAME`."]
    md += ["", "## Risks", ""] + [f"- {r}" for r in RISKS[plan["route"]]]
    md += ["", "## How to evaluate", "", EVALUATE[plan["route"]]]
    md += ["", "## Run it", "", "```", f"rung run {plan_file}", "```", ""]
    return "\n".join(md)
