"""PLAN.md: the plan advisor/planner.py builds, written for people. Goal, recommendation and the rules behind it,
the *Rungs considered* table (why_not), steps with the exact commands, the data checklist, cost, risks, evaluation.

Numbers the decision turns on (how many labelled examples SFT needs, and so on) come from the rule book's
thresholds (advisor/rules.yaml, or the file RUNG_RULES names), never from this file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rung.advisor.rulebook import RuleBook

BYTES_PER_TOKEN = 4  # ~4 bytes of English text per token (BPE tokenizers): sizes the corpus in MB

FORMATS = {
    "train": '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]} '
             'or {"prompt": ..., "completion": ...} per JSONL line (for GRPO the answer is the reference, and '
             '{"input": ...} alone will do for a checker that needs none)',
    "eval": "same shape as train",
    "preferences": '{"prompt": ..., "chosen": ..., "rejected": ...} per JSONL line',
    "corpus": ".txt / .md files in a folder, or JSONL with a \"text\" field",
    "documents": "a folder of .txt / .md / .pdf files",
    "queries": '{"query": ..., "relevant": ["doc id", ...]} per JSONL line, or BEIR qrels TSV',
    "examples": '{"input": ..., "output": ...} per JSONL line',
    "schema": "JSON Schema (draft 2020-12)",
}


def how_much(role: str, book: RuleBook) -> str:
    """How much data of a role the plan needs (the data checklist's column)."""
    corpus_mb = book.thresholds["min_cpt_tokens"] * BYTES_PER_TOKEN / 1e6
    return {
        "train": f"at least {book.show('min_labeled_examples')} (input, ideal output) examples; 1,000+ is better",
        "eval": "50-200 held-out examples, never trained on",
        "preferences": f"at least {book.show('min_preference_pairs')} pairs (prompt, chosen, rejected)",
        "corpus": f"at least {book.show('min_cpt_tokens')} tokens for continued pretraining (~{corpus_mb:,.0f} MB of text)",
        "documents": "every document the answers may come from",
        "queries": "30+ real questions, each with the ids of the documents that answer it",
        "examples": "5-20 good (input, output) examples; the first few go into the prompt",
        "schema": "one JSON Schema file",
    }[role]


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


def why_not(rung: str, plan: dict[str, Any], answers: dict[str, Any], book: RuleBook) -> str:
    """One line on why a rung of the ladder was not chosen (or that it was); numbers from the rule book."""
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
            return f"below {book.show('min_prompt_tokens_per_day')} prompt tokens a day, prompt caching is cheaper"
        if goal == "preferences":
            return (f"DPO needs {book.show('min_preference_pairs')}+ preference pairs "
                    f"(you have {answers['preference_pairs']:,})")
        if result in ("untried", "good_enough"):
            return f"prompting is {result.replace('_', ' ')}: climb only with evidence that it is inconsistent"
        return f"needs {book.show('min_labeled_examples')}+ labelled examples (you have {answers['labeled_examples']:,})"
    if rung == "continued_pretraining":
        enough = book.show("min_cpt_tokens")
        if goal != "domain_language":
            return f"only for fluency in a domain's language, with {enough}+ tokens of domain text"
        return (f"needs {enough}+ tokens of domain text (you have {answers['domain_corpus_tokens']:,})"
                if answers["domain_corpus_tokens"] < book.thresholds["min_cpt_tokens"]
                else "over budget (see the budget rule above)")
    if goal == "facts":
        return "a bigger model still does not know your private or latest facts"
    return f"only when even the best prompt fails or the skill is new (prompting result: {result.replace('_', ' ')})"


def _commands(plan: dict[str, Any], context: dict[str, Any]) -> list[str]:
    """The exact commands for this plan: data checks for training data, a dry run, the run."""
    out: Path = context["out"]
    plan_file = (out / "plan.yaml").as_posix()
    data = plan.get("data") or {}
    lines = []
    checks = {"sft": ("train", "sft"), "dpo": ("preferences", "dpo"), "grpo": ("train", "grpo")}
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
        lines.append(f"| {role} | `{', '.join(paths)}` | {FORMATS[role]} | {how_much(role, context['book'])} | {status} |")
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
                   "and rewards/margins; for GRPO the mean reward (reward.png) and frac_reward_zero_std (groups "
                   "whose answers all scored the same teach nothing).",
    "continued_pretraining": "Perplexity on held-out domain text should fall; perplexity on general text should not "
                             "rise by more than 20% (general_ppl_warn_ratio); then evaluate the SFT model on tasks.",
    "bigger_model": "Run the same eval set on each shortlisted model and the current one; keep the smallest that "
                    "meets the bar.",
}


def grpo_section(plan: dict[str, Any]) -> list[str]:
    """Why GRPO and what it costs, for a plan with a grpo step (the arithmetic is advisor/estimator.py's)."""
    step = next((s for s in plan["steps"] if s["engine"] == "grpo"), None)
    if step is None:
        return []
    from rung.advisor.estimator import GRPO_DECODE_COST

    settings = step.get("settings") or {}
    groups = settings.get("num_generations", 8)
    return ["", "### Why GRPO, and what it costs", "",
            "A program can score an answer, so that score is the reward: GRPO (TRL's GRPOTrainer) samples "
            f"{groups} answers to each training prompt, scores each with the task's metric (the one `rung probe` and "
            "the ship gate use, engines/metrics.py) and moves the model toward the answers that beat their group's "
            "mean. It needs prompts, not demonstrations, and it sharpens what the model can already sometimes do: "
            "a prompt whose answers all score 0 teaches nothing.",
            "", f"Cost: every prompt is answered {groups} times before it is trained on, so a GRPO prompt costs about "
            f"{groups} x (1 + {GRPO_DECODE_COST}) = {groups * (1 + GRPO_DECODE_COST)} SFT examples' time (a generated "
            f"token ~{GRPO_DECODE_COST} trained tokens: decoding is memory-bound). `--use-vllm` generates faster on a "
            "GPU. The gate step then checks the result on held-out rows with the same metric."]


def _goal_section(plan: dict[str, Any], answers: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """What the user wants and told rung, and what rung measured; the answers the rungs below follow (a
    measured prompting result replaces the answered one)."""
    md: list[str] = []
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
    evidence = plan.get("evidence")
    if evidence:
        scores = ", ".join(f"{name} {entry['score']:.2f}" + (f" [{entry['ci'][0]:.2f}, {entry['ci'][1]:.2f}]"
                                                             if entry.get("ci") else "")
                           for name, entry in evidence["scores"].items())
        md += [f"What rung measured ({evidence['metric']} on {evidence['n']} held-out rows, target "
               f"{evidence['target']:.2f}): {scores}"
               + (f"; so prompting is **{evidence['prompting_result'].replace('_', ' ')}**" if evidence["prompting_result"] else "")
               + (f", not {evidence['replaced_answer'].replace('_', ' ')} as answered" if evidence["replaced_answer"] else "")
               + ".", ""]
        if evidence["prompting_result"]:
            answers = {**answers, "prompting_result": evidence["prompting_result"]}  # the rungs below follow it
    return md, answers


def _recommendation_section(plan: dict[str, Any], advice: dict[str, Any], title: str) -> list[str]:
    """The route, why (the rules that fired), its warnings and what would change it."""
    md: list[str] = []
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
    md += grpo_section(plan)
    return md


def _steps_section(plan: dict[str, Any], answers: dict[str, Any], context: dict[str, Any], plan_file: str) -> list[str]:
    """The rungs considered, the plan's steps with their settings, and the commands in order."""
    md: list[str] = []
    md += ["", "## Rungs considered", "", "| rung | verdict |", "|---|---|"]
    md += [f"| {rung} | {why_not(rung, plan, answers, context['book'])} |" for rung in LADDER]
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
    return md


def _cost_section(plan: dict[str, Any], advice: dict[str, Any], context: dict[str, Any]) -> list[str]:
    """The estimate: the model it is for, the GPU-hours band and its basis, the compute terms, per step."""
    from rung.advisor.render import estimate_lines, gpu_hours_text

    md: list[str] = []
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
    if est.get("gpu_hours_high"):
        md += ["", f"The GPU-hours are a range, not a promise. The point is the efficiency of {est['efficiency']['basis']}, "
               f"listed with their sources in advisor/public_runs.yaml; the band ({est['efficiency']['level']:.0%}) is wide enough that each of "
               "those runs, left out of the fit, falls inside the band computed without it. Published runs are "
               "large pretraining jobs; a small fine-tuning job can land anywhere in the band. "
               "`rung estimate --explain` shows the arithmetic."]
        md += ["", "| compute term | FLOPs | share |", "|---|---|---|"]
        md += [f"| {term['term']} | {term['flops']:.2e} | {term['share']:.1%} |" for term in est["flops_terms"]]
    if est.get("steps") and len(est["steps"]) > 1:
        md += ["", "| step | method | tokens | GPU-hours (band) | cost | memory/GPU |", "|---|---|---|---|---|---|"]
        for s in est["steps"]:
            md.append(f"| {s['step']} | {s['method']} ({s['adapter']}) | {s['tokens']:,.0f} | "
                      f"{gpu_hours_text(s['gpu_hours'])} ({gpu_hours_text(s['gpu_hours_low'])}-"
                      f"{gpu_hours_text(s['gpu_hours_high'])}) | ${s['cost_usd']:,.2f} | "
                      f"{s['memory_gb']:.1f} GB |")
    md += ["", f"Re-estimate with other numbers: `rung estimate --params-b {est.get('params_b', 7):g} --tokens N --gpu NAME`."]
    return md


def render_plan_md(plan: dict[str, Any], advice: dict[str, Any], context: dict[str, Any]) -> str:
    """PLAN.md's text. `context` (from planner.build_plan): out, cpu_run, defaulted_model, defaulted_roles, book."""
    from rung.advisor.render import recommendation_title

    plan_file = (context["out"] / "plan.yaml").as_posix()
    md = [f"# Plan: {plan['name']}", ""]
    goal, answers = _goal_section(plan, plan["answers"])
    md += goal + _recommendation_section(plan, advice, recommendation_title(plan))
    md += _steps_section(plan, answers, context, plan_file)
    md += ["", "## Data checklist", ""] + _data_checklist(plan, context)
    md += _cost_section(plan, advice, context)
    md += ["", "## Risks", ""] + [f"- {r}" for r in RISKS[plan["route"]]]
    md += ["", "## How to evaluate", "", EVALUATE[plan["route"]]]
    md += ["", "## Run it", "", "```", f"rung run {plan_file}", "```", ""]
    return "\n".join(md)
