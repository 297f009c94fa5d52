"""The `prompting` engine: the first rung. Build a system prompt and a few-shot prompt from your examples,
save them as files you can paste anywhere, and measure how well a model follows them.

Inputs (plan.yaml `data`): `examples` (JSONL of {input, output}; every shape core/rows.py reads: chat
`messages`, prompt/completion, question/answer, ...), optional `eval` (same shapes, held out) and `schema` (a
JSON Schema the outputs must satisfy). A row's own system message (a schema, facts the answer needs) comes
first in every prompt, then rung's instructions. Writes into the step folder:

    system_prompt.txt      the instructions alone
    few_shot_prompt.txt    system + examples + "{input}", as plain text (paste into any chat UI)
    few_shot_prompt.json   the same as chat messages [{role, content}] (OpenAI-style APIs, LangChain)
    eval_outputs.jsonl     with an eval set and a model: every answer, zero-shot and few-shot
    samples.md             a few of them side by side

The prompts are LangChain templates (ChatPromptTemplate + FewShotChatMessagePromptTemplate). Adherence:
exact match (whitespace-trimmed), and for JSON goals whether the output parses, matches the expected JSON,
and validates against the schema. Below `target`, the report says the next rung (fine-tuning) is justified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.rows import load_task_rows, merge_system, shared_system
from rung.engines.prompts import build_prompt, build_system_prompt, load_schema, row_chats, to_chat, wants_json
from rung.core.settings import PromptingSettings


# ---------------------------------------------------------------- data ------------------------------------

# ---------------------------------------------------------------- prompts ---------------------------------

def save_prompts(folder: Path, system: str, prompt) -> dict[str, str]:
    paths = {"system_prompt": folder / "system_prompt.txt", "few_shot_prompt": folder / "few_shot_prompt.txt",
             "few_shot_prompt_json": folder / "few_shot_prompt.json"}
    atomic_write_text(paths["system_prompt"], system + "\n")
    atomic_write_text(paths["few_shot_prompt"], prompt.format(input="{input}") + "\n")
    atomic_write_json(paths["few_shot_prompt_json"], {
        "how_to_use": "Replace {input} in the last message with the request; send the messages to any chat API.",
        "messages": to_chat(prompt, "{input}"),
    })
    return {key: str(path) for key, path in paths.items()}


# ---------------------------------------------------------------- generation and scoring ------------------

def score(outputs: list[str], expected: list[str], *, json_goal: bool = False, schema: Any = None,
          metric: str | None = None, rows: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Adherence on 0..1 (engines/metrics.py): exact match; token F1 for free text; for JSON goals json_valid,
    json_match (same value) and schema_valid; a user metric (FILE.py:NAME) under its function's name, scored
    with the rows' records. The headline (verdict) metric is the user's, else schema_valid, json_match or
    exact_match."""
    from rung.core import user_metric
    from rung.engines import metrics

    def mean(name: str, **options: Any) -> float:
        return round(metrics.score(outputs, expected, name, **options).mean, 4) if expected else 0.0

    result = {}
    if user_metric.is_user_metric(metric):
        result[user_metric.label(metric)] = mean(metric, rows=rows)
    result["exact_match"] = mean("exact_match")
    if not (json_goal or schema is not None):  # free text: partial credit shows progress exact match hides
        result["token_f1"] = mean("token_f1")
    else:
        result["json_valid"] = mean("json_valid")
        result["json_match"] = round(sum(metrics.json_match(o, e) for o, e in zip(outputs, expected)
                                         if metrics.parse_json(e) is not None) / max(len(expected), 1), 4)
        if schema is not None:
            result["schema_valid"] = mean("json_schema", schema=schema)
    return result


def evaluate(model_spec: str, prompts: dict[str, tuple[str, list[dict[str, Any]]]], rows: list[dict[str, Any]], *,
             max_new_tokens: int, batch_size: int = 8, json_goal: bool = False, schema: Any = None,
             metric: str | None = None, trust_remote_code: bool = False, api_base: str | None = None,
             api_key_env: str | None = None, concurrency: int = 4, backend: str = "auto", timeout_s: float = 30.0,
             max_retries: int = 2) -> dict[str, dict[str, Any]]:
    """Ask one model (local, or openai:NAME at an endpoint) each prompt, given as (instructions, shots), over the
    eval rows (row_chats: each row keeps its system message): {variant: {"outputs", "metrics"}}, plus the
    model's usage under "usage"."""
    from rung.core.generation import open_chat_model

    model = open_chat_model(model_spec, api_base=api_base, api_key_env=api_key_env, concurrency=concurrency,
                            trust_remote_code=trust_remote_code, batch_size=batch_size, backend=backend,
                            timeout_s=timeout_s, max_retries=max_retries)
    expected = [r["output"] for r in rows]
    results: dict[str, Any] = {}
    for name, (instructions, shots) in prompts.items():
        outputs = model.chat(row_chats(instructions, shots, rows), max_new_tokens=max_new_tokens)
        results[name] = {"outputs": outputs, "metrics": score(outputs, expected, json_goal=json_goal, schema=schema,
                                                             metric=metric, rows=rows)}
    results["usage"] = model.usage
    return results


def headline_metric(metrics: dict[str, float], metric: str | None = None) -> str:
    """The adherence figure that matters: the user's own metric when one is given, schema validity for schema
    goals, JSON match for JSON, else exact match."""
    from rung.core import user_metric

    if user_metric.is_user_metric(metric) and user_metric.label(metric) in metrics:
        return user_metric.label(metric)
    for key in ("schema_valid", "json_match", "exact_match"):
        if key in metrics:
            return key
    return "exact_match"


def _cell(text: str, limit: int = 140) -> str:
    text = text.replace("|", "\\|").replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def samples_markdown(rows: list[dict[str, str]], columns: dict[str, list[str]], limit: int = 10) -> str:
    names = list(columns)
    lines = ["| input | expected | " + " | ".join(names) + " |", "|---" * (2 + len(names)) + "|"]
    for i, row in enumerate(rows[:limit]):
        lines.append(f"| {_cell(row['input'])} | {_cell(row['output'])} | "
                     + " | ".join(_cell(columns[n][i]) for n in names) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the engine ------------------------------

def check_user_metric(metric: str | None, plan_dir: Path) -> str | None:
    """The step's `metric` setting, a user metric's file taken relative to the plan's folder, checked (it
    imports, the function exists) before anything is written; None when the engine's own metrics apply."""
    from rung.core.user_metric import resolve_spec
    from rung.engines.metrics import check_metric

    metric = resolve_spec(metric, plan_dir)
    return check_metric(metric) if metric else None


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    settings = step_settings(PromptingSettings, step, ctx)
    examples_path = ctx.data_path("examples")
    if examples_path is None:
        raise RungError("the prompting engine needs data.examples (JSONL of {input, output})")
    examples = load_task_rows(examples_path, "examples")
    schema = load_schema(ctx.data_path("schema"))
    eval_path = ctx.data_path("eval")
    eval_rows = load_task_rows(eval_path, "eval examples")[: settings.max_eval_examples] if eval_path else []
    json_goal = wants_json(ctx.plan, examples, schema)
    own_metric = check_user_metric(settings.metric, ctx.plan_dir)

    shots = examples[: max(0, settings.num_examples)]
    instructions = settings.system_prompt or build_system_prompt(ctx.plan, examples, schema)
    system = merge_system(shared_system(examples), instructions)  # the saved prompt: the rows' system message too
    few_shot = build_prompt(system, shots)
    outputs: dict[str, Any] = save_prompts(ctx.run_dir, system, few_shot)
    metrics: dict[str, Any] = {"few_shot_examples": len(shots)}
    summary = [f"Wrote a system prompt and a {len(shots)}-shot prompt (LangChain templates) to paste anywhere: "
               "`system_prompt.txt`, `few_shot_prompt.txt`, `few_shot_prompt.json`."]

    model_spec = settings.model_name_or_path or ctx.plan.get("base_model")
    if not eval_rows or not model_spec:
        missing = "an eval set (data.eval)" if not eval_rows else "a model (base_model or settings.model_name_or_path)"
        summary.append(f"No adherence measured: add {missing} to see whether prompting is enough.")
        return StepResult(outputs=outputs, metrics=metrics, summary="\n\n".join(summary))

    prompts = {"few_shot": (instructions, shots)}
    if settings.zero_shot_baseline:
        prompts = {"zero_shot": (instructions, []), **prompts}
    results = evaluate(str(model_spec), prompts, eval_rows, max_new_tokens=settings.max_new_tokens,
                       batch_size=settings.batch_size, json_goal=json_goal, schema=schema, metric=own_metric,
                       trust_remote_code=settings.trust_remote_code, api_base=settings.api_base,
                       api_key_env=settings.api_key_env, concurrency=settings.concurrency,
                       backend=settings.backend, timeout_s=settings.timeout_s, max_retries=settings.max_retries)
    usage = results.pop("usage")
    key = headline_metric(results["few_shot"]["metrics"], own_metric)
    best = max(result["metrics"][key] for result in results.values())
    # adherence first: report.md's step table shows the first numbers
    metrics = {"adherence": best, "target": settings.target, "eval_examples": len(eval_rows), **metrics}
    for name, result in results.items():
        for metric, value in result["metrics"].items():
            metrics[f"{name}/{metric}"] = value

    records = [{"input": r["input"], "expected": r["output"], **{n: results[n]["outputs"][i] for n in results}}
               for i, r in enumerate(eval_rows)]
    eval_file = ctx.run_dir / "eval_outputs.jsonl"
    atomic_write_text(eval_file, "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records))
    samples = ctx.run_dir / "samples.md"
    atomic_write_text(samples, f"# Prompting on `{model_spec}`: answers next to the expected ones\n\n"
                      + samples_markdown(eval_rows, {n: r["outputs"] for n, r in results.items()}))
    outputs.update(eval_outputs=str(eval_file), samples=str(samples))

    table = ["| prompt | " + " | ".join(results["few_shot"]["metrics"]) + " |",
             "|---" * (1 + len(results["few_shot"]["metrics"])) + "|"]
    for name, result in results.items():
        table.append(f"| {name} | " + " | ".join(f"{v:.0%}" for v in result["metrics"].values()) + " |")
    summary.append(f"Adherence of `{model_spec}` on {len(eval_rows)} eval examples:\n\n" + "\n".join(table))
    metrics["model_requests"] = usage.get("requests")
    evidence_path, next_line = write_evidence(ctx, settings.target, results, eval_rows, schema, own_metric)
    outputs["evidence"] = str(evidence_path)
    if best >= settings.target:
        summary.append(f"**Verdict:** {key} {best:.0%} meets the target of {settings.target:.0%}: prompting is "
                       "enough. Ship the prompt; no training needed.")
    else:
        summary.append(f"**Verdict:** {key} {best:.0%} is below the target of {settings.target:.0%}. " + next_line)
    return StepResult(outputs=outputs, metrics=metrics, summary="\n\n".join(summary))


def write_evidence(ctx: StepContext, target: float, results: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
                   schema: Any, user_metric: str | None = None) -> tuple[Path, str]:
    """The step's scores as evidence.yaml (the task metric with bootstrap CIs, as `rung probe` writes them) and
    the advice it gives: the next rung, with the exact command that re-plans from the evidence."""
    from rung.advisor.answers import validate_answers
    from rung.advisor.evidence import validate_evidence
    from rung.advisor.rules import advise
    from rung.core.fileio import atomic_write_yaml
    from rung.engines import metrics

    expected = [r["output"] for r in rows]
    metric = metrics.choose_metric(str(ctx.plan.get("goal") or ""), expected, schema, metric=user_metric)
    rungs = {}
    for name, result in results.items():
        scored = metrics.score(result["outputs"], expected, metric, rows=rows,
                               **({"schema": schema} if metric == "json_schema" else {}))
        mean = round(scored.mean, 4)
        rungs[name] = {"score": mean, "ci": [min(mean, round(scored.ci_low, 4)), max(mean, round(scored.ci_high, 4))]}
    evidence = {"version": 1, "metric": metric, "target": target, "n": len(rows), "rungs": rungs}
    path = ctx.run_dir / "evidence.yaml"
    atomic_write_yaml(path, evidence)
    answers, problems = validate_answers(dict(ctx.plan.get("answers") or {"goal": ctx.plan.get("goal")}))
    if problems or validate_evidence(evidence, str(path)) or target <= 0:
        return path, "Climb only with evidence: `rung advise --evidence` reads the scores in evidence.yaml."
    answers_path = ctx.run_dir / "answers.yaml"
    atomic_write_yaml(answers_path, answers)
    advice = advise(answers, evidence=evidence)
    route = advice["route"] + (f" ({advice['method']}, {advice['adapter']})" if advice.get("method") else "")
    command = (f"rung plan --answers {answers_path} --evidence {path} --out {ctx.plan_dir / 'next'}"
               + "".join(f" --data {role}={value}" for role, value in (ctx.plan.get("data") or {}).items()
                         if isinstance(value, str)))
    return path, (f"Measured with `{metric}`, the next rung is **{route}** "
                  f"({advice['rules'][0]['id']}). Re-plan from this evidence:\n\n```\n{command}\n```")
