"""The rule file: what rules.yaml may say, reading it, and checking it. advisor/rules.py evaluates what this loads.

rules.yaml is a mapping with two keys:
- `thresholds`: name -> number. Every number the decision turns on is named here once. A `when` test names one as
  `$name` (`labeled_examples: {gte: $min_labeled_examples}`); `because`, `warning` and `flip_when` show one as
  `{name}` (rendered by threshold_text: 25M, 2.5M, 1,500). The plan and the questionnaire read them too.
- `rules`: the ordered list of `{id, stage, when, recommend, because, warning?, flip_when?}`.
The file checked is advisor/rules.yaml, or the one RUNG_RULES names. Every problem is reported at once, one line
each, naming the rule and the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from rung.advisor.answers import PROMPTING_RESULTS, SCHEMA
from rung.core.checks import entry_problems, unknown_key_problems
from rung.core.errors import RungError, did_you_mean
from rung.core.fileio import short, shown
from rung.core.vocab import ADAPTERS, METHODS, ROUTES

RULES_FILE = Path(__file__).with_name("rules.yaml")
RULES_ENV = "RUNG_RULES"  # a path: use that rules file instead of the shipped one (thresholds and all)
TOP_KEYS = ("thresholds", "rules")
STAGES = ("evidence", "route", "adapter", "budget", "note")
RULE_KEYS = ("id", "stage", "when", "recommend", "because", "warning", "flip_when")
# Thresholds the Python reads besides the rules: the plan's collect steps, PLAN.md's "Rungs considered" and its
# data checklist (advisor/planner.py, advisor/plan_md.py). A rules file must define them.
READ_BY_CODE = ("min_labeled_examples", "min_preference_pairs", "min_cpt_tokens", "min_prompt_tokens_per_day")

OPERATORS = {
    "eq": lambda fact, value: fact == value,
    "ne": lambda fact, value: fact != value,
    "in": lambda fact, value: fact in value,
    "not_in": lambda fact, value: fact not in value,
    "gte": lambda fact, value: fact is not None and fact >= value,
    "gt": lambda fact, value: fact is not None and fact > value,
    "lte": lambda fact, value: fact is not None and fact <= value,
    "lt": lambda fact, value: fact is not None and fact < value,
}
OPERATOR_TEXT = {"eq": "=", "ne": "!=", "in": "in", "not_in": "not in", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}


def _fact_kinds() -> dict[str, tuple[str, tuple | None]]:
    kinds: dict[str, tuple[str, tuple | None]] = {}
    for key, (kind, detail, _) in SCHEMA.items():
        if kind == "enum":
            kinds[key] = ("enum", tuple(detail))
        elif kind == "bool":
            kinds[key] = ("bool", None)
        elif kind == "text":
            kinds[key] = ("text", None)
        else:
            kinds[key] = ("number", None)
    kinds.update({
        # derived facts (see rules.answer_facts, estimator.memory_facts, rules.advise)
        "prompt_tokens_per_day": ("number", None),        # prompt_tokens x requests_per_day
        "prompt_tokens_per_day_text": ("text", None),
        "domain_corpus_tokens_text": ("text", None),
        "params_b": ("number", None),                     # the base model's size used by the estimator
        "has_gpu": ("bool", None),                        # gpu_memory_gb > 0 and gpu_count > 0
        "gpu_total_gb": ("number", None),                 # gpu_memory_gb x gpu_count
        "route": ("enum", ROUTES),                        # after the route stage
        "method": ("enum", METHODS),
        "adapter": ("enum", ADAPTERS),                    # after the adapter stage
        "lora_gb": ("number", None),                      # smallest sensible setup: micro-batch 1, checkpointing
        "qlora_gb": ("number", None),
        "full_gb": ("number", None),                      # per GPU, sharded over gpu_count (ZeRO-3)
        "lora_fits": ("bool", None),                      # null when there is no GPU
        "qlora_fits": ("bool", None),
        "full_fits": ("bool", None),
        "estimate_gpu": ("text", None),                   # the GPU the estimate is priced on
        "route_cost_usd": ("number", None),
        "route_cost_text": ("text", None),
        "budget_text": ("text", None),
        "over_budget": ("bool", None),                    # route_cost_usd > budget_usd (false without a budget)
        # measured on the user's model and rows (advisor/evidence.py); absent without --evidence
        "evidence_target": ("number", None),
        "evidence_n": ("number", None),
        "evidence_metric": ("text", None),
        "evidence_best_prompt": ("number", None),         # the higher of zero-shot and few-shot
        "evidence_best_prompt_meets_target": ("bool", None),
        "evidence_rag": ("number", None),
        "evidence_rag_meets_target": ("bool", None),
        "evidence_text": ("text", None),                  # the scores, cited: "few-shot scored 0.62 [...] on 40 ..."
    })
    return kinds


FACTS = _fact_kinds()
RECOMMEND = {
    "route": ("enum", ROUTES),
    "method": ("enum", METHODS),
    "adapter": ("enum", ADAPTERS),
    "collect": ("enum", ("examples", "preferences")),     # the plan adds a data-collection step
    "corpus_as_documents": ("bool", None),                # RAG over the domain corpus
    "generate_pairs": ("bool", None),                     # the plan generates SFT pairs from today's prompt
    "step_down": ("bool", None),                          # a budget rule moved down the ladder
    "prompting_result": ("enum", tuple(PROMPTING_RESULTS)),  # evidence: what the scores say, replacing the answer
}
STAGE_RECOMMENDS = {"evidence": {"prompting_result"}, "route": {"route"}, "adapter": {"adapter"}, "budget": {"route", "step_down"}, "note": set()}
FIELD = re.compile(r"\{([^{}]*)\}")  # {fact} or {threshold} in because / warning / flip_when


class RuleBook(NamedTuple):
    """A loaded, checked rules file."""

    thresholds: dict[str, int | float]
    rules: list[dict[str, Any]]
    path: str

    def show(self, name: str) -> str:
        """A threshold as people read it (threshold_text)."""
        return threshold_text(self.thresholds[name])


def threshold_text(value: int | float) -> str:
    """25_000_000 -> '25M', 2_500_000 -> '2.5M', 1_500 -> '1,500', 1_234_567 -> '1,234,567' (never rounded)."""
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6)):
        if value >= size and value * 10 % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:,g}" if isinstance(value, float) else f"{value:,}"


def is_reference(value: Any) -> bool:
    """`$name` in a `when` test: the number is the threshold `name`."""
    return isinstance(value, str) and value.startswith("$")


def resolve(value: Any, thresholds: dict[str, Any]) -> Any:
    """A test value with `$name` references replaced by the thresholds' numbers (validated on load)."""
    if is_reference(value):
        return thresholds[value[1:]]
    if isinstance(value, list):
        return [resolve(v, thresholds) for v in value]
    return value


# ----------------------------------------------------------------------------------------------- checking

def _value_problem(fact: str, value: Any) -> str | None:
    kind, choices = FACTS[fact]
    if kind == "enum":
        if value not in choices:
            return (f'"{shown(value)}" is not a value of {fact} ({", ".join(choices)})'
                    f'{did_you_mean(str(value), choices)}')
    elif kind == "bool":
        if not isinstance(value, bool):
            return f"{fact} is true/false, got {short(value)}"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{fact} is a number, got {short(value)}"
    return None


def validate_thresholds(thresholds: Any, where: str = "rules.yaml") -> list[str]:
    """Every problem in the `thresholds` mapping: names, numbers, clashes with fact names, the ones code reads."""
    if not isinstance(thresholds, dict):
        return [f"{where}: thresholds: expected a mapping of threshold name -> number"]
    problems = []
    for name, value in thresholds.items():
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(f"{where}: thresholds: {short(name)}: a name is letters, digits and _ "
                            "(min_labeled_examples)")
        elif name in FACTS:
            problems.append(f'{where}: thresholds.{name}: "{name}" is a fact; give the threshold another name')
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append(f"{where}: thresholds.{shown(name)}: expected a number >= 0, got {short(value)}")
    for name in READ_BY_CODE:
        if name not in thresholds:
            problems.append(f'{where}: thresholds: missing "{name}" (the plan and PLAN.md read it)'
                            f'{did_you_mean(name, [str(k) for k in thresholds])}')
    return problems


def _test_values(at: str, fact: str, test: Any, thresholds: dict[str, Any], problems: list[str]) -> list[Any] | None:
    """The values a `when` test compares with (references resolved), or None after recording why it is broken."""
    if isinstance(test, dict):
        if len(test) != 1:
            problems.append(f"{at}: when.{fact}: one operator per test, got {len(test)}")
            return None
        op, value = next(iter(test.items()))
        if op not in OPERATORS:
            problems.append(f'{at}: when.{fact}: unknown operator "{op}"{did_you_mean(str(op), OPERATORS)}'
                            f' (operators: {", ".join(OPERATORS)})')
            return None
        if op in ("in", "not_in") and not isinstance(value, list):
            problems.append(f"{at}: when.{fact}: {op} needs a list")
            return None
        if op in ("gte", "gt", "lte", "lt") and FACTS[fact][0] != "number":
            problems.append(f"{at}: when.{fact}: {op} compares numbers; {fact} is not a number")
            return None
        values = value if op in ("in", "not_in") else [value]
    else:
        values = test if isinstance(test, list) else [test]
    resolved = []
    for value in values:
        if is_reference(value) and value[1:] not in thresholds:
            names = [f"${name}" for name in thresholds]
            problems.append(f'{at}: when.{fact}: unknown threshold "{shown(value)}"{did_you_mean(value, names)}'
                            f' (thresholds: {", ".join(names) or "none"})')
            continue
        resolved.append(resolve(value, thresholds))
    return resolved


def validate_rules(rules: Any, thresholds: dict[str, Any], where: str = "rules.yaml") -> list[str]:
    """Every problem in a rule list, each naming the rule and the key."""
    if not isinstance(rules, list) or not rules:
        return [f"{where}: rules: expected a non-empty list of rules"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            problems.append(f"{where}: rule {index + 1}: expected a mapping")
            continue
        rid = rule.get("id")
        at = f"{where}: rule {index + 1} ({shown(rid)})" if rid else f"{where}: rule {index + 1}"
        problems += entry_problems(rule, RULE_KEYS, seen, at, missing="missing id")
        stage = rule.get("stage")
        if stage not in STAGES:
            problems.append(f'{at}: stage "{shown(stage)}" is not one of {", ".join(STAGES)}'
                            f'{did_you_mean(str(stage), STAGES)}')
        when = rule.get("when")
        if not isinstance(when, dict) or not when:
            problems.append(f"{at}: when: expected a mapping of fact -> test")
            when = {}
        for fact, test in when.items():
            if fact not in FACTS:
                problems.append(f'{at}: when: unknown fact "{fact}"{did_you_mean(str(fact), FACTS)}')
                continue
            for value in _test_values(at, fact, test, thresholds, problems) or []:
                problem = _value_problem(fact, value)
                if problem:
                    problems.append(f"{at}: when.{fact}: {problem}")
        recommend = rule.get("recommend", {})
        if not isinstance(recommend, dict):
            problems.append(f"{at}: recommend: expected a mapping")
            recommend = {}
        problems += unknown_key_problems(recommend, RECOMMEND, f"{at}: recommend")
        for key, value in recommend.items():
            if key not in RECOMMEND:
                continue
            kind, choices = RECOMMEND[key]
            if kind == "enum" and value not in choices:
                problems.append(f'{at}: recommend.{key}: "{shown(value)}" is not one of {", ".join(choices)}'
                                f'{did_you_mean(str(value), choices)}')
            if kind == "bool" and not isinstance(value, bool):
                problems.append(f"{at}: recommend.{key}: expected true or false, got {short(value)}")
        if stage in STAGE_RECOMMENDS:
            missing = STAGE_RECOMMENDS[stage] - set(recommend)
            if missing:
                problems.append(f"{at}: a {stage} rule must recommend {', '.join(sorted(missing))}")
            if stage == "adapter" and set(recommend) - {"adapter"}:
                problems.append(f"{at}: an adapter rule recommends only adapter")
            if stage == "note" and recommend:
                problems.append(f"{at}: a note rule recommends nothing (it adds a reason and a warning)")
        texts = [("because", rule.get("because"))]
        if not isinstance(rule.get("because"), str) or not rule["because"].strip():
            problems.append(f"{at}: because: expected a sentence")
            texts = []
        if "warning" in rule:
            if not isinstance(rule["warning"], str) or not rule["warning"].strip():
                problems.append(f"{at}: warning: expected a sentence")
            else:
                texts.append(("warning", rule["warning"]))
        flips = rule.get("flip_when", [])
        if not isinstance(flips, list) or not all(isinstance(f, str) and f.strip() for f in flips):
            problems.append(f"{at}: flip_when: expected a list of sentences")
        else:
            texts += [("flip_when", f) for f in flips]
        for key, text in texts:
            for name in FIELD.findall(text):
                if not name.isidentifier():
                    problems.append(f"{at}: {key}: {{{name}}}: only plain {{fact}} or {{threshold}} names are allowed")
                elif name not in FACTS and name not in thresholds:
                    problems.append(f"{at}: {key}: unknown fact or threshold {{{name}}}"
                                    f"{did_you_mean(name, [*FACTS, *thresholds])}")
    return problems


def validate_rulebook(data: Any, where: str = "rules.yaml") -> list[str]:
    """Every problem in a whole rules file: its two keys, the thresholds, then the rules (which may use them)."""
    if isinstance(data, list):
        return [f"{where}: expected a mapping with thresholds: and rules: (a bare list of rules is the old format: "
                f"put it under rules: and name its numbers under thresholds:)"]
    if not isinstance(data, dict):
        return [f"{where}: expected a mapping with thresholds: and rules:"]
    problems = [f'{where}: unknown key "{key}"{did_you_mean(str(key), TOP_KEYS)} (keys: {", ".join(TOP_KEYS)})'
                for key in data if key not in TOP_KEYS]
    thresholds = data.get("thresholds")
    problems += validate_thresholds(thresholds, where)
    if not isinstance(thresholds, dict):
        thresholds = {}
    return problems + validate_rules(data.get("rules"), thresholds, where)


# ----------------------------------------------------------------------------------------------- loading

_CACHE: dict[tuple[str, int], RuleBook] = {}


def rules_path() -> Path:
    """$RUNG_RULES when set, else the shipped advisor/rules.yaml."""
    chosen = os.environ.get(RULES_ENV, "").strip()
    return Path(chosen).expanduser() if chosen else RULES_FILE


def load_rulebook(path: str | Path | None = None) -> RuleBook:
    """Read and check a rules file (default: rules_path()); cached until the file changes. Raises RungError listing
    every problem."""
    from rung.core.fileio import read_yaml

    path = Path(path) if path else rules_path()
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        if path != RULES_FILE and not path.exists() and os.environ.get(RULES_ENV, "").strip():
            raise RungError(f"{RULES_ENV}={os.environ[RULES_ENV]}: no such rules file; unset {RULES_ENV} to use "
                            f"the shipped {RULES_FILE}") from None
        key = (str(path), 0)
    if key not in _CACHE:
        data = read_yaml(path, what="rules file")
        problems = validate_rulebook(data, where=str(path))
        if problems:
            raise RungError(problems)
        _CACHE[key] = RuleBook(dict(data["thresholds"]), data["rules"], str(path))
    return _CACHE[key]


def load_rules(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The ordered rules of a rules file (see load_rulebook)."""
    return load_rulebook(path).rules
