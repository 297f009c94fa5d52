"""The answers file: what `rung ask` writes and `rung advise` / `rung plan` read. Schema as data, checked all at once.

Every key is optional except `goal`. Problems (unknown key with a did-you-mean, wrong type, value outside the
choices, negative count, YAML 1.1 booleans where text was meant) are collected and raised together as one
RungError, one line each, naming the file, the line and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import short, shown

GOALS = {
    "style": "change tone, format or style",
    "facts": "give the model current or private facts",
    "schema": "hit a strict output schema every time",
    "domain_task": "specialize on a narrow domain task",
    "shorten_prompt": "cut tokens/latency from a huge prompt",
    "new_capability": "teach a fundamentally new capability",
    "domain_language": "make the model fluent in a specialized domain's language",
    "preferences": "make answers better than the demonstrations / match human rankings",
}
PROMPTING_RESULTS = {
    "untried": "no serious prompt engineering yet",
    "good_enough": "a good prompt already gets acceptable answers",
    "inconsistent": "the best prompt works sometimes, not reliably",
    "fails": "even the best prompt can't half-do it",
}
KNOWLEDGE_CHANGES = {
    "never": "the facts are fixed",
    "rarely": "they change a few times a year",
    "often": "they change weekly or faster",
}

# key -> (kind, detail, default). kinds: enum (detail = choices), bool, count (int >= 0), number (>= 0),
# positive (> 0), text. A default of REQUIRED means the key must be present. `nullable` keys accept null.
REQUIRED = object()
SCHEMA: dict[str, tuple[str, Any, Any]] = {
    "goal": ("enum", GOALS, REQUIRED),
    "prompting_result": ("enum", PROMPTING_RESULTS, "untried"),
    "knowledge_changes": ("enum", KNOWLEDGE_CHANGES, "rarely"),
    "private_data": ("bool", None, False),
    "labeled_examples": ("count", None, 0),
    "preference_pairs": ("count", None, 0),
    "domain_corpus_tokens": ("count", None, 0),
    "prompt_tokens": ("count", None, 0),
    "requests_per_day": ("count", None, 0),
    "gpu_memory_gb": ("number", None, 0),
    "gpu_count": ("count", None, 0),
    "budget_usd": ("number", None, None),
    "base_model": ("text", None, None),
    "base_model_params_b": ("positive", None, None),
    "keep_general_skills": ("bool", None, True),
    # can a program score an answer (a test, a schema, an exact reference)? Then the score can be GRPO's reward
    "automatic_checker": ("bool", None, False),
}
NULLABLE = frozenset({"budget_usd", "base_model", "base_model_params_b"})


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _yaml11_hint(value: Any) -> str:
    return (f" (YAML reads unquoted yes/no/on/off/true/false as a boolean: you wrote something that became "
            f"{str(value).lower()}; quote the value)") if isinstance(value, bool) else ""


def coerce(key: str, value: Any) -> tuple[Any, str | None]:
    """(the normalised value, None) or (None, the problem) for one key. The questionnaire uses this too."""
    kind, detail, _ = SCHEMA[key]
    if value is None:
        if key in NULLABLE:
            return None, None
        return None, f"is empty; expected {describe(key)}"
    if kind == "enum":
        if not isinstance(value, str):
            return None, f"expected one of {', '.join(detail)}, got {_type_name(value)}{_yaml11_hint(value)}"
        if value not in detail:
            return None, f'"{shown(value)}" is not one of {", ".join(detail)}{did_you_mean(value, detail)}'
        return value, None
    if kind == "bool":
        if isinstance(value, bool):
            return value, None
        return None, f"expected true or false (unquoted), got {_type_name(value)} {short(value)}"
    if kind == "text":
        if isinstance(value, str) and value.strip():
            return value.strip(), None
        return None, (f"expected text (a hub id or a path), got {_type_name(value)} {short(value)}"
                      f"{_yaml11_hint(value)}")
    # numbers: count (int >= 0), number (>= 0), positive (> 0)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, f"expected {describe(key)}, got {_type_name(value)}{_yaml11_hint(value)}"
    if isinstance(value, str):
        from rung.advisor.estimator import parse_count

        try:
            value = parse_count(value)
        except ValueError:
            return None, f'expected {describe(key)}, got text "{shown(value)}"'
    if value != value or value in (float("inf"), float("-inf")):
        return None, f"expected {describe(key)}, got {short(value)}"
    if kind == "count":
        if value < 0:
            return None, f"must be >= 0, got {value:g}"
        if value != int(value):
            return None, f"expected a whole number, got {value:g}"
        return int(value), None
    if kind == "positive" and value <= 0:
        return None, f"must be > 0, got {value:g}"
    if kind == "number" and value < 0:
        return None, f"must be >= 0, got {value:g}"
    return (int(value) if float(value).is_integer() else value), None


def describe(key: str) -> str:
    kind, detail, _ = SCHEMA[key]
    text = {
        "enum": "one of " + ", ".join(detail or ()),
        "bool": "true or false",
        "count": "a whole number >= 0",
        "number": "a number >= 0",
        "positive": "a number > 0",
        "text": "text",
    }[kind]
    return text + (" or null" if key in NULLABLE else "")


def validate_answers(raw: Any, where: str = "answers", lines: dict[str, int] | None = None) -> tuple[dict[str, Any], list[str]]:
    """(answers with every default filled in, problems). `lines` maps keys to line numbers for messages."""
    lines = lines or {}

    def at(key: str) -> str:
        return f"{where}:{lines[key]}: {key}" if key in lines else f"{where}: {key}"

    if raw is None:
        return {}, [f"{where}: the file is empty; it needs at least `goal: <one of {', '.join(GOALS)}>`"]
    if not isinstance(raw, dict):
        return {}, [f"{where}: expected a mapping of key: value at the top level, got {_type_name(raw)}"]
    unknown = [key for key in raw if key not in SCHEMA]
    if len(unknown) > 3 and len(unknown) * 2 > len(raw):  # a wrong file: never list its lines back
        return {}, [f"{where}: {len(unknown)} of its {len(raw)} keys are not answers keys: is this an answers "
                    f"file (what `rung ask` writes)? Known keys: {', '.join(SCHEMA)}"]
    problems: list[str] = []
    answers: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in SCHEMA:
            problems.append(f'{at(str(key))}: unknown key{did_you_mean(str(key), SCHEMA)}'
                            f' (known keys: {", ".join(SCHEMA)})')
            continue
        coerced, problem = coerce(key, value)
        if problem:
            problems.append(f"{at(key)}: {problem}")
        else:
            answers[key] = coerced
    for key, (_, _, default) in SCHEMA.items():
        if key in answers or key in raw:
            continue
        if default is REQUIRED:
            problems.append(f"{where}: missing key {key} (one of {', '.join(GOALS)})")
        else:
            answers[key] = default
    return answers, problems


def _key_lines(text: str) -> dict[str, int]:
    """Line numbers (1-based) of the top-level keys, for error messages. Best effort."""
    import yaml

    try:
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def load_answers(path: str | Path) -> dict[str, Any]:
    """Read and check an answers file; every default filled in. Raises RungError listing every problem."""
    from rung.core.fileio import read_yaml

    raw = read_yaml(path, what="answers file")
    answers, problems = validate_answers(raw, where=str(path))
    if problems:
        try:
            lines = _key_lines(Path(path).read_text(encoding="utf-8"))
        except OSError:
            lines = {}
        raise RungError(validate_answers(raw, where=str(path), lines=lines)[1])
    return answers


def explicit_answers(answers: dict[str, Any]) -> dict[str, Any]:
    """The answers minus keys still at their default: what is worth writing back to a file."""
    return {k: v for k, v in answers.items() if k == "goal" or v != SCHEMA[k][2]}
