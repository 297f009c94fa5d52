"""Task rows: one reader for JSONL / JSON files and one normaliser from every row shape rung accepts to a record
that keeps the system message. Pure Python (no torch, no click beyond RungError).

    rows, problems = read_task_rows(path)      # every problem at once, each "FILE:LINE: ..."; never the line's text
    rows = load_task_rows(path, "eval rows")   # the same, raising one RungError that lists the problems
    conversation(row)                          # [system?] + earlier turns + the user turn: how the row was trained

A record is a dict:

    system    the row's system message ("" when it has none); several system messages are joined by blank lines
    history   the turns before the last user turn, as [{role, content}] (multi-turn chats; [] otherwise)
    input     the last user turn before the answer
    output    the answer: the last assistant turn (chat), completion, chosen (preference pairs), output, answer...
    source    the row as it was in the file (a JSON object), for user metrics that read their own fields

Accepted shapes (the first that matches wins):

    {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": ...}, ...]}   OpenAI / TRL chat
    {"prompt": TEXT | [messages], "completion": TEXT | [assistant messages]}            TRL prompt/completion
    {"prompt": ..., "chosen": ..., "rejected": ...}                                     TRL preference (chosen)
    {"input": {"messages": [...]}, "preferred_output": [...], ...}                      OpenAI preference
    {"input": ..., "output": ...}, {"question": ..., "answer": ...}                     plain pairs
    {"instruction": ..., "input"|"context": ..., "output"|"response": ...}              Alpaca / Dolly
A top-level "system" string is the system message of a flat row. Content may be text or OpenAI text parts;
any other value is written as JSON.

Multi-turn chats: the answer is the last assistant turn and the input the last user turn before it; the turns
before that user turn are `history` (earlier answers included), and turns between it and the answer (tool
results) are `after`. conversation() puts them back in order, so a model is asked with the whole conversation
it saw in training; few-shot shots use only their own input and output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from rung.core.errors import RungError
from rung.core.fileio import read_text

MAX_PROBLEMS_SHOWN = 30
SHAPES = "{input, output} (or prompt/completion, prompt/chosen, question/answer, instruction/response, chat messages)"


# ---------------------------------------------------------------------------------------------- reading


def _skip_ws(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _json_array_items(text: str) -> Iterable[tuple[int, Any]]:
    """(line, value) for each element of a top-level JSON array, so array files also get line numbers."""
    decoder = json.JSONDecoder()
    index = _skip_ws(text, 0)
    if index >= len(text) or text[index] != "[":
        value, end = decoder.raw_decode(text, index)  # a single object: one row
        yield text.count("\n", 0, index) + 1, value
        if _skip_ws(text, end) != len(text):
            raise json.JSONDecodeError("extra data after the top-level value", text, _skip_ws(text, end))
        return
    index = _skip_ws(text, index + 1)
    if index < len(text) and text[index] == "]":
        return
    while True:
        value, end = decoder.raw_decode(text, index)
        yield text.count("\n", 0, index) + 1, value
        index = _skip_ws(text, end)
        if index < len(text) and text[index] == ",":
            index = _skip_ws(text, index + 1)
            continue
        if index < len(text) and text[index] == "]":
            return
        raise json.JSONDecodeError("expected ',' or ']' between array items", text, index)


class BadLine(NamedTuple):
    reason: str           # the parser's reason ("nested too deeply" for a bomb)
    column: int | None


def jsonl_records(text: str) -> Iterator[tuple[int, Any, BadLine | None]]:
    """Every non-blank line of JSONL text, in order: (line number, value, None), or (line number, None, BadLine) for
    a line that is not JSON. The one JSONL loop: each reader (rows here, RAG documents and queries in rag/) words
    its problems itself and keeps going, so every bad line is reported at once. Lines end at "\n" only (JSON Lines):
    a U+2028 inside a string is text, not a line break."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as error:
            yield number, None, BadLine(error.msg, error.colno)
        except RecursionError:
            yield number, None, BadLine("nested too deeply", None)


def read_objects(path: Path, what: str = "data file (.jsonl or .json)") -> tuple[list[tuple[int, Any]], list[str]]:
    """(line, parsed value) pairs and problems for bad JSON. JSONL unless the file is a .json array/object.
    A problem names the file, the line and the parser's reason; it never repeats the line's text."""
    path = Path(path)
    text = read_text(path, what=what)
    items: list[tuple[int, Any]] = []
    problems: list[str] = []
    if path.suffix.lower() == ".json":
        try:
            items = list(_json_array_items(text))
        except json.JSONDecodeError as error:
            problems.append(f"{path}:{error.lineno}: bad JSON: {error.msg} (column {error.colno}); "
                            "the rest of the file was not read")
        except RecursionError:
            problems.append(f"{path}: bad JSON: nested too deeply; the file was not read")
        return items, problems
    for number, value, why in jsonl_records(text):
        if why is None:
            items.append((number, value))
        else:
            problems.append(f"{path}:{number}: bad JSON: {why.reason}"
                            + (f" (column {why.column})" if why.column is not None else ""))
    if not items and not problems:
        problems.append(f"{path}: the file has no rows")
    return items, problems


# ---------------------------------------------------------------------------------------------- normalising


def as_text(value: Any) -> str:
    """Content as text: a string as is, OpenAI text parts joined, a message's content, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    return json.dumps(value, ensure_ascii=False)


def _messages(value: Any) -> list[dict[str, str]] | None:
    """[{role, content}] with text content, or None when `value` is not a list of role/content objects."""
    if isinstance(value, dict) and "role" in value:
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    clean = []
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            return None
        clean.append({"role": message["role"], "content": as_text(message["content"])})
    return clean


def _from_chat(prompt: list[dict[str, str]], answer: str) -> dict[str, Any] | None:
    """A record from chat messages before the answer: the system turns, the last user turn, the turns before it."""
    users = [i for i, m in enumerate(prompt) if m["role"] == "user"]
    if not users:
        return None
    last = users[-1]
    system = "\n\n".join(m["content"] for m in prompt if m["role"] == "system")
    history = [m for m in prompt[:last] if m["role"] != "system"]
    after = [m for m in prompt[last + 1:] if m["role"] != "system"]  # tool results between the question and answer
    return {"system": system, "history": history, "input": prompt[last]["content"], "output": answer,
            **({"after": after} if after else {})}


def _side(value: Any) -> str:
    """A completion or chosen answer as text: text as is, assistant messages joined."""
    messages = _messages(value)
    return "".join(m["content"] for m in messages) if messages is not None else as_text(value)


def normalise(item: Any) -> dict[str, Any] | None:
    """The record for one parsed row (see the module docstring), or None when no accepted shape matches."""
    if not isinstance(item, dict):
        return None
    record = _normalise(item)
    if record is None:
        return None
    if not record["system"] and isinstance(item.get("system"), str):
        record["system"] = item["system"]
    record.setdefault("history", [])
    record["source"] = item
    return record


def _normalise(item: dict[str, Any]) -> dict[str, Any] | None:
    if "messages" in item:
        messages = _messages(item["messages"])
        if messages is None:
            return None
        answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        return _from_chat(messages[:answers[-1]], messages[answers[-1]]["content"]) if answers else None
    if isinstance(item.get("input"), dict) and "preferred_output" in item:  # OpenAI preference rows
        prompt = _messages(item["input"].get("messages"))
        return _from_chat(prompt, _side(item["preferred_output"])) if prompt else None
    for source, target in (("prompt", "completion"), ("prompt", "chosen")):
        if source in item and target in item:
            prompt = _messages(item[source]) if isinstance(item[source], list) else None
            if prompt is not None:
                return _from_chat(prompt, _side(item[target]))
            return {"system": "", "input": as_text(item[source]), "output": _side(item[target])}
    if "instruction" in item and ("output" in item or "response" in item):
        extra = item.get("input", item.get("context"))
        text = as_text(item["instruction"]) + (f"\n\n{as_text(extra)}" if extra not in (None, "") else "")
        return {"system": "", "input": text, "output": as_text(item.get("output", item.get("response")))}
    for source, target in (("input", "output"), ("question", "answer")):
        if source in item and target in item:
            return {"system": "", "input": as_text(item[source]), "output": as_text(item[target])}
    return None


def read_task_rows(path: str | Path, what: str = "rows") -> tuple[list[dict[str, Any]], list[str]]:
    """(records, problems) for a JSONL / JSON file: bad JSON and rows of no accepted shape, every one with its
    line; a row's keys are named, its text is not."""
    path = Path(path)
    items, problems = read_objects(path, what=what)
    rows = []
    for number, item in items:
        record = normalise(item)
        if record is None:
            got = f"keys {', '.join(sorted(map(str, item))[:8]) or 'none'}" if isinstance(item, dict) \
                else f"a JSON {type(item).__name__}"
            problems.append(f"{path}:{number}: expected {SHAPES}, got {got}")
        else:
            rows.append(record)
    return rows, problems


def raise_problems(problems: list[str], limit: int = MAX_PROBLEMS_SHOWN) -> None:
    if problems:
        more = [f"... and {len(problems) - limit} more problems"] if len(problems) > limit else []
        raise RungError(problems[:limit] + more)


def load_task_rows(path: str | Path, what: str = "rows") -> list[dict[str, Any]]:
    """Records, or one RungError listing every problem (the first MAX_PROBLEMS_SHOWN) with its line."""
    rows, problems = read_task_rows(path, what)
    raise_problems(problems)
    if not rows:
        raise RungError(f"{path}: no {what} in the file")
    return rows


# ---------------------------------------------------------------------------------------------- conversations


def merge_system(row_system: str, instructions: str) -> str:
    """The row's own system message first (it carries the task's facts: a schema, a code word), then rung's
    instructions; either may be empty, and text already in the row's message is not repeated."""
    row_system, instructions = row_system.strip(), instructions.strip()
    if not row_system or instructions in row_system:
        return row_system or instructions
    if row_system in instructions:
        return instructions
    return f"{row_system}\n\n{instructions}" if instructions else row_system


def turns(row: dict[str, Any]) -> list[dict[str, str]]:
    """The row's turns after the system message: earlier turns, the user turn, then any tool turns before the
    answer."""
    return [*row.get("history", []), {"role": "user", "content": row["input"]}, *row.get("after", [])]


def conversation(row: dict[str, Any], system: str | None = None) -> list[dict[str, str]]:
    """The conversation that asks for the row's answer: its system message (or `system`) and its turns. This is
    what a model fine-tuned on the row saw before the answer."""
    text = row.get("system", "") if system is None else system
    return ([{"role": "system", "content": text}] if text else []) + turns(row)


def training_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The row as a chat to train on: its conversation and the answer."""
    return conversation(row) + [{"role": "assistant", "content": row["output"]}]


def shared_system(rows: list[dict[str, Any]]) -> str:
    """The system message every row has (the usual case: one task, one schema), else ""."""
    systems = {row.get("system", "") for row in rows}
    return systems.pop() if len(systems) == 1 else ""
