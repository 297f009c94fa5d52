"""The `prompting` engine: the first rung. Build a system prompt and a few-shot prompt from your examples,
save them as files you can paste anywhere, and measure how well a model follows them.

Inputs (plan.yaml `data`): `examples` (JSONL of {input, output}; prompt/completion, question/answer and chat
`messages` rows are read too), optional `eval` (same shape, held out) and `schema` (a JSON Schema the
outputs must satisfy). Writes into the step folder:

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
import statistics
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text, read_text, short
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import PromptingSettings


# ---------------------------------------------------------------- data ------------------------------------

def read_rows(path: Path, what: str = "examples") -> list[dict[str, str]]:
    """{input, output} rows from JSONL or a JSON list. Other common shapes are mapped; bad rows are errors."""
    text = read_text(path, what=what)
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            raw = list(enumerate(json.loads(text), start=1))
        except (json.JSONDecodeError, RecursionError) as error:
            raise RungError(f"{path}: not valid JSON: {error or 'nested too deeply'}") from None
    else:
        raw = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    raw.append((number, json.loads(line)))
                except (json.JSONDecodeError, RecursionError) as error:
                    reason = getattr(error, "msg", "nested too deeply")
                    raise RungError(f"{path}:{number}: not valid JSON: {reason}") from None
    rows, problems = [], []
    for number, item in raw:
        row = _as_pair(item)
        if row is None:
            problems.append(f"{path}:{number}: expected {{input, output}} (or prompt/completion, question/answer, "
                            "chat messages), got keys "
                            f"{short(sorted(item)) if isinstance(item, dict) else type(item).__name__}")
        else:
            rows.append(row)
    if problems:
        raise RungError(problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else []))
    if not rows:
        raise RungError(f"{path}: no {what} in the file")
    return rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _as_pair(item: Any) -> dict[str, str] | None:
    if not isinstance(item, dict):
        return None
    for source, target in (("input", "output"), ("prompt", "completion"), ("question", "answer")):
        if source in item and target in item:
            return {"input": _text(item[source]), "output": _text(item[target])}
    messages = item.get("messages")
    if isinstance(messages, list):
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        answers = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        if users and answers:
            return {"input": _text(users[-1]), "output": _text(answers[-1])}
    return None


def load_schema(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        schema = json.loads(read_text(path, what="JSON Schema"))
    except (json.JSONDecodeError, RecursionError) as error:
        raise RungError(f"{path}: the JSON Schema is not valid JSON: {error or 'nested too deeply'}") from None
    try:
        import jsonschema
    except ImportError:
        raise RungError("checking outputs against a JSON Schema needs jsonschema: pip install jsonschema") from None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise RungError(f"{path}: not a valid JSON Schema: {error.message}") from None
    return schema


# ---------------------------------------------------------------- prompts ---------------------------------

def wants_json(plan: dict[str, Any], rows: list[dict[str, str]], schema: Any) -> bool:
    if schema is not None or str(plan.get("goal", "")).lower() in ("schema", "json", "structured_output"):
        return True
    return bool(rows) and all(_parse_json(r["output"]) is not None for r in rows)


def build_system_prompt(plan: dict[str, Any], rows: list[dict[str, str]], schema: Any) -> str:
    """Instructions from what the plan and the examples say: the task, the output length, the format."""
    from rung.advisor.answers import GOALS

    task = str(plan.get("name") or "this task").replace("-", " ").replace("_", " ")
    goal = GOALS.get(str(plan.get("goal")))
    lines = [f"You are an assistant for: {task}." + (f" The aim: {goal}." if goal else ""),
             "Answer every request in exactly the style and format of the examples."]
    words = [len(r["output"].split()) for r in rows]
    if words:
        typical = int(statistics.median(words))
        lines.append(f"Keep answers about {typical} word{'s' if typical != 1 else ''} long "
                     f"(the examples run {min(words)}-{max(words)}); no preamble, no explanation.")
    if schema is not None:
        lines.append("Reply with one JSON value only, no prose and no code fences, valid against this JSON Schema:")
        lines.append(json.dumps(schema, ensure_ascii=False))
    elif wants_json(plan, rows, schema):
        lines.append("Reply with one JSON value only, no prose and no code fences.")
    return "\n".join(lines)


def build_prompt(system: str, shots: list[dict[str, str]]):
    """A LangChain ChatPromptTemplate: system message, the few-shot pairs, then the user's {input}."""
    from langchain_core.messages import SystemMessage
    from langchain_core.prompts import ChatPromptTemplate, FewShotChatMessagePromptTemplate

    parts: list[Any] = [SystemMessage(content=system)]  # a message, not a template: braces stay literal
    if shots:
        example = ChatPromptTemplate.from_messages([("human", "{input}"), ("ai", "{output}")])
        parts.append(FewShotChatMessagePromptTemplate(examples=shots, example_prompt=example))
    parts.append(("human", "{input}"))
    return ChatPromptTemplate.from_messages(parts)


ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def to_chat(prompt, text: str) -> list[dict[str, str]]:
    """Format the template for one input as [{role, content}] (what chat templates and APIs take)."""
    return [{"role": ROLES.get(m.type, m.type), "content": m.content} for m in prompt.format_messages(input=text)]


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

def _parse_json(text: str) -> Any:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[4:] if body.startswith("json") else body
    try:
        return json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return None


def token_f1(output: str, expected: str) -> float:
    """SQuAD-style F1 over lower-cased whitespace tokens (bag of words)."""
    from collections import Counter

    got, want = Counter(output.lower().split()), Counter(expected.lower().split())
    common = sum((got & want).values())
    if not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def score(outputs: list[str], expected: list[str], *, json_goal: bool = False, schema: Any = None) -> dict[str, float]:
    """Adherence on 0..1: exact match; token F1 for free text; for JSON goals json_valid, json_match (same
    value) and schema_valid. The headline (verdict) metric is schema_valid, json_match or exact_match."""
    n = len(expected) or 1
    metrics = {"exact_match": sum(o.strip() == e.strip() for o, e in zip(outputs, expected)) / n}
    if not (json_goal or schema is not None):  # free text: partial credit shows progress exact match hides
        metrics["token_f1"] = sum(token_f1(o, e) for o, e in zip(outputs, expected)) / n
    if json_goal or schema is not None:
        parsed = [_parse_json(o) for o in outputs]
        ok = [p is not None or o.strip() == "null" for p, o in zip(parsed, outputs)]
        metrics["json_valid"] = sum(ok) / n
        metrics["json_match"] = sum(v and p == _parse_json(e) for p, e, v in zip(parsed, expected, ok)) / n
        if schema is not None:
            import jsonschema

            validator = jsonschema.validators.validator_for(schema)(schema)
            metrics["schema_valid"] = sum(v and validator.is_valid(p) for p, v in zip(parsed, ok)) / n
    return {k: round(v, 4) for k, v in metrics.items()}


def generate(model, tokenizer, chats: list[list[dict[str, str]]], *, max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy answers, batched with left padding. Prompts longer than the model's window keep their end."""
    import torch

    window = getattr(model.config, "max_position_embeddings", None) or 4096
    budget = max(16, window - max_new_tokens)
    tokenizer.padding_side = "left"
    answers: list[str] = []
    model.eval()
    for start in range(0, len(chats), batch_size):
        batch = chats[start:start + batch_size]
        ids = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in batch]
        ids = [list(i["input_ids"] if isinstance(i, dict) or hasattr(i, "keys") else i)[-budget:] for i in ids]
        width = max(len(i) for i in ids)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
        with torch.no_grad():
            out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad)
        for row in out:
            answers.append(tokenizer.decode(row[width:], skip_special_tokens=True).strip())
    return answers


def evaluate(model_spec: str, prompts: dict[str, Any], rows: list[dict[str, str]], *, max_new_tokens: int,
             batch_size: int = 8, json_goal: bool = False, schema: Any = None,
             trust_remote_code: bool = False) -> dict[str, dict[str, Any]]:
    """Run each prompt template over the eval rows with one model: {variant: {"outputs", "metrics"}}."""
    import torch

    from rung.core.models import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(model_spec, trust_remote_code=trust_remote_code)
    expected = [r["output"] for r in rows]
    results = {}
    for name, prompt in prompts.items():
        outputs = generate(model, tokenizer, [to_chat(prompt, r["input"]) for r in rows],
                           max_new_tokens=max_new_tokens, batch_size=batch_size)
        results[name] = {"outputs": outputs, "metrics": score(outputs, expected, json_goal=json_goal, schema=schema)}
    del model
    return results


def headline_metric(metrics: dict[str, float]) -> str:
    """The adherence figure that matters: schema validity for schema goals, JSON match for JSON, else exact match."""
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

def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:
    settings = step_settings(PromptingSettings, step, ctx)
    examples_path = ctx.data_path("examples")
    if examples_path is None:
        raise RungError("the prompting engine needs data.examples (JSONL of {input, output})")
    examples = read_rows(examples_path, "examples")
    schema = load_schema(ctx.data_path("schema"))
    eval_path = ctx.data_path("eval")
    eval_rows = read_rows(eval_path, "eval examples")[: settings.max_eval_examples] if eval_path else []
    json_goal = wants_json(ctx.plan, examples, schema)

    shots = examples[: max(0, settings.num_examples)]
    system = settings.system_prompt or build_system_prompt(ctx.plan, examples, schema)
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

    prompts = {"few_shot": few_shot}
    if settings.zero_shot_baseline:
        prompts = {"zero_shot": build_prompt(system, []), **prompts}
    results = evaluate(str(model_spec), prompts, eval_rows, max_new_tokens=settings.max_new_tokens,
                       batch_size=settings.batch_size, json_goal=json_goal, schema=schema,
                       trust_remote_code=settings.trust_remote_code)
    key = headline_metric(results["few_shot"]["metrics"])
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
    if best >= settings.target:
        summary.append(f"**Verdict:** {key} {best:.0%} meets the target of {settings.target:.0%}: prompting is "
                       "enough. Ship the prompt; no training needed.")
    else:
        summary.append(f"**Verdict:** {key} {best:.0%} is below the target of {settings.target:.0%}. Improve the "
                       "prompt or the model first; if it stays below, climbing to fine-tuning (LoRA SFT on a few "
                       "hundred labelled examples) is justified: `rung advise`.")
    return StepResult(outputs=outputs, metrics=metrics, summary="\n\n".join(summary))
