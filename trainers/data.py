"""Reading and checking fine-tuning data: every problem names its file and line.

Accepted shapes (JSONL, one object a line, or a JSON array of objects):

    sft   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   (OpenAI chat)
          {"prompt": "...", "completion": "..."}           (text, or both as message lists)
    dpo   {"prompt": ..., "chosen": ..., "rejected": ...}  (text, or message lists)
          {"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}  (OpenAI)
    text  {"text": "..."} rows, or .txt/.md files (one document each)
    grpo  the sft shapes (the last assistant turn / the completion is the reference), {"input": ..., "output": ...}
          (the probe's and the gate's rows), or a prompt alone ({"prompt": ...}, messages ending with the user) for
          a checker that needs no reference

Everything is normalised to TRL's own dataset formats: conversational `messages`, `prompt`/`completion`, and
`prompt`/`chosen`/`rejected`; grpo rows become `prompt` + `reference` (text, "" when there is none). OpenAI's preference shape becomes conversational prompt/chosen/rejected.
Pure Python: token statistics take a tokenizer the caller loads.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rung.core.errors import RungError
from rung.core.fileio import read_bytes
from rung.core.rows import read_objects

KINDS = ("sft", "dpo", "text", "grpo")
ROLES = ("system", "user", "assistant", "tool")
MAX_PROBLEMS_SHOWN = 30


@dataclass
class Row:
    line: int            # 1-based line in the file where the object starts
    example: dict        # normalised to a TRL format
    shape: str           # messages | prompt_completion | preference | openai_preference | text


@dataclass
class DataReport:
    path: Path
    kind: str
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # "FILE:LINE: message"
    warnings: list[str] = field(default_factory=list)
    shapes: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, line it repeats)

    @property
    def examples(self) -> list[dict]:
        return [row.example for row in self.rows]


# ---------------------------------------------------------------------------------------------- reading


# read_objects (JSONL, or a .json array / object, with line numbers) is the one reader of task rows: core/rows.py


# ---------------------------------------------------------------------------------------------- checking


def _text_content(content: Any) -> str | None:
    """Message content as text: a string, or OpenAI content parts [{"type": "text", "text": ...}]."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return None


def _check_messages(messages: Any, where: str, *, need_assistant: bool = True,
                    end_with_assistant: bool = True) -> tuple[list[dict], list[str]]:
    """Normalised messages and problems: roles, order, empty content, an assistant turn to learn from."""
    if not isinstance(messages, list) or not messages:
        return [], [f"{where}: expected a non-empty list of messages"]
    problems: list[str] = []
    clean: list[dict] = []
    for index, message in enumerate(messages):
        at = f"{where}[{index}]"
        if not isinstance(message, dict):
            problems.append(f"{at}: expected an object with role and content")
            continue
        role = message.get("role")
        if role not in ROLES:
            problems.append(f'{at}: role "{role}" is not one of {", ".join(ROLES)}' if role is not None
                            else f'{at}: missing key "role"')
            continue
        if "content" not in message:
            problems.append(f'{at}: missing key "content"')
            continue
        content = _text_content(message["content"])
        if content is None:
            problems.append(f"{at}: content must be text (a string or text parts)")
            continue
        if not content.strip():
            problems.append(f"{at}: empty {role} content")
            continue
        clean.append({"role": role, "content": content})
    if problems:
        return clean, problems
    roles = [m["role"] for m in clean]
    for index, role in enumerate(roles):
        if role == "system" and index != 0:
            problems.append(f"{where}[{index}]: role order: a system message may only come first")
        if index and role in ("user", "assistant") and roles[index - 1] == role:
            problems.append(f"{where}[{index}]: role order: two {role} turns in a row")
    turns = [r for r in roles if r != "system"]
    if turns and turns[0] == "assistant" and need_assistant:
        problems.append(f"{where}: role order: the conversation starts with the assistant, not the user")
    if need_assistant and "assistant" not in roles:
        problems.append(f"{where}: no assistant turn: nothing to learn")
    elif end_with_assistant and need_assistant and roles[-1] != "assistant":
        problems.append(f"{where}: role order: the last turn is {roles[-1]}; it should be the assistant's answer")
    return clean, problems


def _check_completion_side(value: Any, where: str) -> tuple[Any, list[str]]:
    """A completion / chosen / rejected: text, or a list of assistant messages."""
    if isinstance(value, str):
        return value, ([] if value.strip() else [f"{where}: empty text"])
    if isinstance(value, dict):  # a single message object
        value = [value]
    if isinstance(value, list):
        clean, problems = _check_messages(value, where, need_assistant=False)
        if not problems and [m["role"] for m in clean] != ["assistant"] * len(clean):
            problems.append(f"{where}: expected assistant messages only")
        if not problems and not clean:
            problems.append(f"{where}: empty")
        return clean, problems
    return None, [f"{where}: expected text or a list of messages, got {type(value).__name__}"]


def _check_prompt(value: Any, where: str) -> tuple[Any, list[str]]:
    if isinstance(value, str):
        return value, ([] if value.strip() else [f"{where}: empty text"])
    if isinstance(value, list):
        clean, problems = _check_messages(value, where, need_assistant=False)
        if not problems and clean and clean[-1]["role"] == "assistant":
            problems.append(f"{where}: role order: the prompt ends with an assistant turn")
        return clean, problems
    return None, [f"{where}: expected text or a list of messages, got {type(value).__name__}"]


def check_object(obj: Any, kind: str, where: str) -> tuple[dict | None, str | None, list[str]]:
    """(normalised example, shape, problems) for one parsed row."""
    if not isinstance(obj, dict):
        return None, None, [f"{where}: expected a JSON object, got {type(obj).__name__}"]
    keys = set(obj)
    if kind == "text":
        if "text" not in keys:
            return None, None, [f'{where}: missing key "text"']
        text = obj["text"]
        if not isinstance(text, str) or not text.strip():
            return None, None, [f'{where}: "text" must be non-empty text']
        return {"text": text}, "text", []
    if kind == "sft":
        if "messages" in keys:
            messages, problems = _check_messages(obj["messages"], f"{where}: messages")
            return {"messages": messages}, "messages", problems
        if "prompt" in keys or "completion" in keys:
            missing = [k for k in ("prompt", "completion") if k not in keys]
            if missing:
                return None, None, [f'{where}: missing key "{missing[0]}" (prompt/completion rows need both)']
            prompt, p1 = _check_prompt(obj["prompt"], f"{where}: prompt")
            completion, p2 = _check_completion_side(obj["completion"], f"{where}: completion")
            problems = p1 + p2
            if not problems and isinstance(prompt, str) != isinstance(completion, str):
                problems.append(f"{where}: prompt and completion must both be text or both be message lists")
            return {"prompt": prompt, "completion": completion}, "prompt_completion", problems
        if "conversations" in keys:
            return None, None, [f'{where}: ShareGPT "conversations" rows are not read; convert to '
                                '"messages" with role/content']
        return None, None, [f'{where}: missing key "messages" (or "prompt" + "completion"); '
                            f'found {", ".join(sorted(keys)) or "no keys"}']
    if kind == "grpo":
        return _check_grpo(obj, where)
    if kind == "dpo":
        if "input" in keys or "preferred_output" in keys or "non_preferred_output" in keys:
            missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in keys]
            if missing:
                return None, None, [f'{where}: missing key "{missing[0]}" (OpenAI preference rows need input, '
                                    "preferred_output and non_preferred_output)"]
            source = obj["input"]
            if not isinstance(source, dict) or "messages" not in source:
                return None, None, [f'{where}: input: expected {{"messages": [...]}}']
            prompt, p1 = _check_prompt(source["messages"], f"{where}: input.messages")
            chosen, p2 = _check_completion_side(obj["preferred_output"], f"{where}: preferred_output")
            rejected, p3 = _check_completion_side(obj["non_preferred_output"], f"{where}: non_preferred_output")
            example = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            problems = p1 + p2 + p3
            if not problems and chosen == rejected:
                problems.append(f"{where}: preferred_output == non_preferred_output: nothing to prefer")
            return example, "openai_preference", problems
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in keys]
        if missing:
            return None, None, [f'{where}: missing key "{k}"' for k in missing]
        prompt, p1 = _check_prompt(obj["prompt"], f"{where}: prompt")
        chosen, p2 = _check_completion_side(obj["chosen"], f"{where}: chosen")
        rejected, p3 = _check_completion_side(obj["rejected"], f"{where}: rejected")
        problems = p1 + p2 + p3
        if not problems:
            kinds = {isinstance(prompt, str), isinstance(chosen, str), isinstance(rejected, str)}
            if len(kinds) > 1:
                problems.append(f"{where}: prompt, chosen and rejected must all be text or all message lists")
            elif chosen == rejected:
                problems.append(f"{where}: chosen == rejected: nothing to prefer")
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, "preference", problems
    raise ValueError(f"unknown kind {kind}")


def _check_grpo(obj: dict, where: str) -> tuple[dict | None, str | None, list[str]]:
    """A GRPO row: a prompt and, where there is one, the reference the metric compares with."""
    if "messages" in obj:
        messages, problems = _check_messages(obj["messages"], f"{where}: messages", need_assistant=False)
        if problems:
            return None, None, problems
        prompt, reference = messages, ""
        if messages and messages[-1]["role"] == "assistant":
            prompt, reference = messages[:-1], messages[-1]["content"]
        if not any(m["role"] == "user" for m in prompt):
            return None, None, [f"{where}: messages: no user turn before the answer: nothing to prompt with"]
        return {"prompt": prompt, "reference": reference}, "messages", []
    for prompt_key, reference_key, shape in (("prompt", "completion", "prompt_completion"),
                                             ("input", "output", "input_output")):
        if prompt_key in obj:
            prompt, problems = _check_prompt(obj[prompt_key], f"{where}: {prompt_key}")
            reference: Any = ""
            if obj.get(reference_key) is not None:
                reference, more = _check_completion_side(obj[reference_key], f"{where}: {reference_key}")
                problems += more
                if isinstance(reference, list):
                    reference = "".join(m["content"] for m in reference)
            return {"prompt": prompt, "reference": reference}, shape, problems
    return None, None, [f'{where}: missing key "prompt" (or "messages", or "input"); '
                        f'found {", ".join(sorted(obj)) or "no keys"}']


def guess_kind(objects: list[tuple[int, Any]]) -> str:
    for _, obj in objects:
        if isinstance(obj, dict):
            keys = set(obj)
            if keys & {"chosen", "rejected", "preferred_output", "non_preferred_output"}:
                return "dpo"
            if keys & {"messages", "prompt", "completion"}:
                return "sft"
            if "text" in keys:
                return "text"
    return "sft"


def example_fingerprint(example: dict) -> str:
    return hashlib.sha256(json.dumps(example, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def check_file(path: str | Path, kind: str | None = None) -> DataReport:
    """Read and check a data file; never raises for problems in rows (they are in report.problems)."""
    path = Path(path)
    if kind == "text" and path.suffix.lower() in (".txt", ".md"):
        report = DataReport(path=path, kind="text")
        text = read_bytes(path, what="text file").decode("utf-8", errors="replace")  # regular files only
        if text.strip():
            report.rows.append(Row(1, {"text": text}, "text"))
        else:
            report.problems.append(f"{path}: empty file")
        report.shapes = {"text": len(report.rows)}
        return report
    objects, problems = read_objects(path)
    kind = kind or guess_kind(objects)
    if kind not in KINDS:
        raise RungError(f'unknown data kind "{kind}" (use {", ".join(KINDS)})')
    report = DataReport(path=path, kind=kind, problems=problems)
    seen: dict[str, int] = {}
    for line, obj in objects:
        example, shape, row_problems = check_object(obj, kind, f"{path}:{line}")
        report.problems += row_problems
        if row_problems or example is None:
            continue
        report.rows.append(Row(line, example, shape))
        report.shapes[shape] = report.shapes.get(shape, 0) + 1
        key = example_fingerprint(example)
        if key in seen:
            report.duplicates.append((line, seen[key]))
        else:
            seen[key] = line
    # TRL needs one format per dataset: mixing shapes (or text with conversational) fails deep inside `datasets`
    formats = {}
    for row in report.rows:
        fmt = (tuple(sorted(row.example)), all(isinstance(v, str) for v in row.example.values()))
        formats.setdefault(fmt, row.line)
    if len(formats) > 1:
        described = [f'{"+".join(keys)} as {"text" if text else "messages"} (first at line {line})'
                     for (keys, text), line in formats.items()]
        report.problems.append(f"{path}: rows mix formats: {'; '.join(described)}; use one format per file")
    if report.duplicates:
        lines = ", ".join(f"{a} repeats {b}" for a, b in report.duplicates[:8])
        more = f" and {len(report.duplicates) - 8} more" if len(report.duplicates) > 8 else ""
        report.warnings.append(f"{len(report.duplicates)} exact duplicate rows (line {lines}{more}); "
                               "they are trained on twice as often")
    return report


def raise_problems(problems: list[str]) -> None:
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems (rung data check FILE lists them all)")
        raise RungError(shown)


def load_examples(path: str | Path, kind: str) -> list[dict]:
    """Checked, normalised examples, or a RungError listing every problem with its line."""
    report = check_file(path, kind)
    raise_problems(report.problems)
    if not report.rows:
        raise RungError(f"{path}: no usable rows")
    return report.examples


def completion_rows(examples: list[dict]) -> list[dict]:
    """Chat rows as TRL conversational prompt/completion rows, so TRL computes the loss on the answers only
    (completion_only_loss, its default for prompt/completion data) when the chat template has no
    {% generation %} markers for assistant_only_loss. A chat with N assistant turns becomes N rows, each
    answer with the whole conversation before it as its prompt: every answer is still learned, and the
    system message (a schema repeated in every row) no longer dominates the loss."""
    rows = []
    for example in examples:
        if "messages" not in example:
            rows.append(example)
            continue
        messages = example["messages"]
        rows += [{"prompt": messages[:i], "completion": [message]} for i, message in enumerate(messages)
                 if message["role"] == "assistant" and i > 0]
    return rows


# ---------------------------------------------------------------------------------------------- split


def load_train_eval(data_path, eval_path, kind: str, eval_fraction: float,
                    seed: int) -> tuple[list[Any], list[Any], str]:
    """Training and held-out examples (every problem with its line, before any model loads): from eval_path
    when given, else a seeded split of data_path. The third value says which, for the log."""
    examples = load_examples(data_path, kind)
    if eval_path:
        return examples, load_examples(eval_path, kind), f"eval file {eval_path}"
    train, held_out = split_examples(examples, eval_fraction, seed)
    split = (f"{eval_fraction:.0%} held out, seed {seed}" if held_out
             else "no eval split (fewer than 10 rows or eval_fraction 0)")
    return train, held_out, split


def split_examples(examples: list[Any], eval_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Deterministic held-out split: shuffle indices with `seed`, hold out round(n * fraction), at least 1
    when there are 10 or more rows and the fraction is above 0, none below that (too few to spare)."""
    n = len(examples)
    if eval_fraction <= 0 or n < 10:
        return list(examples), []
    n_eval = max(1, round(n * eval_fraction))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


# ---------------------------------------------------------------------------------------------- tokens


def render_lengths(example: dict, tokenizer) -> dict[str, int]:
    """Token counts as the trainer sees them: the chat template for conversational rows, text + EOS otherwise.

    Returns {"total": n, "prompt": p}; for preference rows total is the longer of prompt+chosen / prompt+rejected.
    """
    def chat(messages, generation_prompt=False):
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def text(value):
        return len(tokenizer(value, add_special_tokens=False)["input_ids"])

    if "messages" in example:
        total = chat(example["messages"])
        first_assistant = next(i for i, m in enumerate(example["messages"]) if m["role"] == "assistant")
        return {"total": total, "prompt": chat(example["messages"][:first_assistant], True)}
    if "text" in example:
        return {"total": text(example["text"]) + 1, "prompt": 0}
    prompt = example["prompt"]
    sides = [example[k] for k in ("completion", "chosen", "rejected") if k in example]
    if not sides:  # a GRPO row: the prompt alone (the completion is generated)
        sides = [[] if isinstance(prompt, list) else ""]
    if isinstance(prompt, list):
        totals = [chat(prompt + side) for side in sides]
        return {"total": max(totals), "prompt": chat(prompt, True)}
    totals = [text(prompt + side) + 1 for side in sides]
    return {"total": max(totals), "prompt": text(prompt)}


def token_stats(examples: list[dict], tokenizer, max_length: int | None) -> dict[str, Any]:
    lengths = [render_lengths(e, tokenizer) for e in examples]
    totals = sorted(x["total"] for x in lengths)
    if not totals:
        return {"count": 0}
    p95 = totals[min(len(totals) - 1, int(round(0.95 * (len(totals) - 1))))]
    over = [i for i, x in enumerate(lengths) if max_length and x["total"] > max_length]
    prompt_over = [i for i, x in enumerate(lengths) if max_length and x["prompt"] >= max_length]
    return {
        "count": len(totals), "min": totals[0], "mean": round(sum(totals) / len(totals), 1), "p95": p95,
        "max": totals[-1], "total_tokens": sum(totals), "max_length": max_length,
        "over_max_length": over, "prompt_fills_max_length": prompt_over,
    }


def truncation_note(kind: str, n_over: int, n_prompt_over: int, max_length: int, packing: bool) -> str:
    """What the trainer will do to examples longer than max_length (TRL 1.16 behaviour)."""
    if not n_over:
        return ""
    if kind == "sft" and packing:
        return (f"{n_over} example(s) exceed max_length {max_length}: with packing (bfd) each is cut to "
                f"{max_length} tokens and the end, including the final EOS, is lost; raise --max-length or "
                "shorten them")
    if kind == "sft":
        return (f"{n_over} example(s) exceed max_length {max_length}: they are cut to the first {max_length} "
                "tokens, so the answer's end and its EOS are lost (the model learns not to stop); "
                f"{n_prompt_over} whose prompt alone fills max_length are dropped. Raise --max-length or shorten them")
    if kind == "dpo":
        return (f"{n_over} pair(s) exceed max_length {max_length}: chosen/rejected are cut to fit (the EOS is lost); "
                f"{n_prompt_over} whose prompt alone fills max_length are dropped. Raise --max-length or shorten them")
    return (f"{n_over} document(s) are longer than the block size {max_length}: they are split across blocks "
            "(nothing is lost)")
