"""The prompts rung writes for the cheap rungs, shared by the prompting engine, probe, gate and bigger_model:
instructions from the plan and the examples, LangChain few-shot templates, and each row's conversation (its own
system message first, core/rows.py). No plan steps here: engines/prompting.py is the `prompting` engine."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.fileio import read_text
from rung.core.rows import merge_system, turns

GENERIC_SYSTEM = "Answer the request directly, with no preamble."


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


def wants_json(plan: dict[str, Any], rows: list[dict[str, str]], schema: Any) -> bool:
    """JSON answers: a JSON Schema was given, or every example's output is a JSON object or list. A `schema`
    goal alone does not say JSON: the format may be SQL or a template."""
    from rung.engines.metrics import parse_json

    if schema is not None:
        return True
    return bool(rows) and all(isinstance(parse_json(r["output"]), (dict, list)) for r in rows)


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
        pairs = [{"input": shot["input"], "output": shot["output"]} for shot in shots]
        parts.append(FewShotChatMessagePromptTemplate(examples=pairs, example_prompt=example))
    parts.append(("human", "{input}"))
    return ChatPromptTemplate.from_messages(parts)


ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def to_chat(prompt, text: str) -> list[dict[str, str]]:
    """Format the template for one input as [{role, content}] (what chat templates and APIs take)."""
    return [{"role": ROLES.get(m.type, m.type), "content": m.content} for m in prompt.format_messages(input=text)]


def row_chats(instructions: str, shots: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The few-shot conversation for each row: the row's own system message first (it carries the task's facts,
    e.g. a schema), then `instructions`, as one system turn; the shots as user/assistant turns; then the row's
    turns (core/rows.py). One LangChain template per distinct system message."""
    templates: dict[str, Any] = {}
    chats = []
    for row in rows:
        system = merge_system(row.get("system", ""), instructions)
        if system not in templates:
            templates[system] = build_prompt(system, shots)
        chats.append(to_chat(templates[system], row["input"])[:-1] + turns(row))
    return chats


def best_instructions(goal: str, examples: list[dict[str, Any]]) -> str:
    """rung's instructions for the cheap rung: written from the examples, a plain instruction without them."""
    return build_system_prompt({"goal": goal, "name": "this task"}, examples, None) if examples else GENERIC_SYSTEM


def prompted(goal: str, examples: list[dict[str, Any]], shots: int,
             rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The cheap rung's conversation for each row: the row's system message with rung's instructions, the first
    `shots` examples as user/assistant turns (none: zero-shot), then the row's turns (row_chats)."""
    return row_chats(best_instructions(goal, examples), examples[:shots], rows)
