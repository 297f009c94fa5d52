"""The rule evaluator: rules.yaml in, a recommendation out. Pure: no I/O past loading the rule file.

A rule is `{id, stage, when, recommend, because, warning?, flip_when?}`. `when` maps a fact to a test; a test is
a value (equals), a list (one of) or `{op: value}` with op in OPERATORS — a closed set, nothing else runs.
Stages run in order (STAGES): `route` and `adapter` and `budget` take the first matching rule, `note` takes
every match. `advise()` computes the facts (answers + derived ones), runs the stages and asks the estimator for
the figures the adapter and budget stages need.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rung.advisor.answers import SCHEMA
from rung.core.errors import RungError, did_you_mean

RULES_FILE = Path(__file__).with_name("rules.yaml")
STAGES = ("route", "adapter", "budget", "note")
ROUTES = ("prompting", "rag", "fine_tuning", "continued_pretraining", "bigger_model")  # = advisor.plan.ROUTES
METHODS = ("sft", "dpo", "sft_then_dpo")
ADAPTERS = ("lora", "qlora", "full")
TRAINING_ROUTES = ("fine_tuning", "continued_pretraining")
RULE_KEYS = ("id", "stage", "when", "recommend", "because", "warning", "flip_when")

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
        # derived facts (see base_facts, memory_facts, cost_facts)
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
}
STAGE_RECOMMENDS = {"route": {"route"}, "adapter": {"adapter"}, "budget": {"route", "step_down"}, "note": set()}

_CACHE: dict[str, list[dict[str, Any]]] = {}


# ----------------------------------------------------------------------------------------------- loading

def _value_problem(fact: str, value: Any) -> str | None:
    kind, choices = FACTS[fact]
    if kind == "enum":
        if value not in choices:
            return f'"{value}" is not a value of {fact} ({", ".join(choices)}){did_you_mean(str(value), choices)}'
    elif kind == "bool":
        if not isinstance(value, bool):
            return f"{fact} is true/false, got {value!r}"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{fact} is a number, got {value!r}"
    return None


_FIELD = re.compile(r"\{([^{}]*)\}")


def validate_rules(rules: Any, where: str = "rules.yaml") -> list[str]:
    """Every problem in a rule list, each naming the rule and the key."""
    if not isinstance(rules, list) or not rules:
        return [f"{where}: expected a non-empty list of rules"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            problems.append(f"{where}: rule {index + 1}: expected a mapping")
            continue
        rid = rule.get("id")
        at = f"{where}: rule {index + 1} ({rid})" if rid else f"{where}: rule {index + 1}"
        for key in rule:
            if key not in RULE_KEYS:
                problems.append(f'{at}: unknown key "{key}"{did_you_mean(str(key), RULE_KEYS)}')
        if not isinstance(rid, str) or not rid:
            problems.append(f"{at}: missing id")
        elif rid in seen:
            problems.append(f'{at}: duplicate id "{rid}"')
        else:
            seen.add(rid)
        stage = rule.get("stage")
        if stage not in STAGES:
            problems.append(f'{at}: stage "{stage}" is not one of {", ".join(STAGES)}{did_you_mean(str(stage), STAGES)}')
        when = rule.get("when")
        if not isinstance(when, dict) or not when:
            problems.append(f"{at}: when: expected a mapping of fact -> test")
            when = {}
        for fact, test in when.items():
            if fact not in FACTS:
                problems.append(f'{at}: when: unknown fact "{fact}"{did_you_mean(str(fact), FACTS)}')
                continue
            if isinstance(test, dict):
                if len(test) != 1:
                    problems.append(f"{at}: when.{fact}: one operator per test, got {len(test)}")
                    continue
                op, value = next(iter(test.items()))
                if op not in OPERATORS:
                    problems.append(f'{at}: when.{fact}: unknown operator "{op}"{did_you_mean(str(op), OPERATORS)}'
                                    f' (operators: {", ".join(OPERATORS)})')
                    continue
                values = value if op in ("in", "not_in") else [value]
                if op in ("in", "not_in") and not isinstance(value, list):
                    problems.append(f"{at}: when.{fact}: {op} needs a list")
                    continue
                if op in ("gte", "gt", "lte", "lt") and FACTS[fact][0] != "number":
                    problems.append(f"{at}: when.{fact}: {op} compares numbers; {fact} is not a number")
                    continue
            else:
                values = test if isinstance(test, list) else [test]
            for value in values:
                problem = _value_problem(fact, value)
                if problem:
                    problems.append(f"{at}: when.{fact}: {problem}")
        recommend = rule.get("recommend", {})
        if not isinstance(recommend, dict):
            problems.append(f"{at}: recommend: expected a mapping")
            recommend = {}
        for key, value in recommend.items():
            if key not in RECOMMEND:
                problems.append(f'{at}: recommend: unknown key "{key}"{did_you_mean(str(key), RECOMMEND)}')
                continue
            kind, choices = RECOMMEND[key]
            if kind == "enum" and value not in choices:
                problems.append(f'{at}: recommend.{key}: "{value}" is not one of {", ".join(choices)}'
                                f'{did_you_mean(str(value), choices)}')
            if kind == "bool" and not isinstance(value, bool):
                problems.append(f"{at}: recommend.{key}: expected true or false, got {value!r}")
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
            for name in _FIELD.findall(text):
                if not name.isidentifier():
                    problems.append(f"{at}: {key}: {{{name}}}: only plain {{fact}} names are allowed")
                elif name not in FACTS:
                    problems.append(f'{at}: {key}: unknown fact {{{name}}}{did_you_mean(name, FACTS)}')
    return problems


def load_rules(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read and validate rules.yaml (cached). Raises RungError listing every problem."""
    from rung.core.fileio import read_yaml

    path = Path(path) if path else RULES_FILE
    key = str(path)
    if key not in _CACHE:
        rules = read_yaml(path, what="rules file")
        problems = validate_rules(rules, where=str(path))
        if problems:
            raise RungError(problems)
        _CACHE[key] = rules
    return _CACHE[key]


# ----------------------------------------------------------------------------------------------- evaluating

def test_holds(test: Any, fact: Any) -> bool:
    if isinstance(test, dict):
        op, value = next(iter(test.items()))
        try:
            return bool(OPERATORS[op](fact, value))
        except TypeError:
            return False
    if isinstance(test, list):
        return fact in test
    return fact == test


def matches(rule: dict[str, Any], facts: dict[str, Any]) -> bool:
    return all(test_holds(test, facts.get(fact)) for fact, test in rule["when"].items())


def evaluate(rules: list[dict[str, Any]], facts: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """The rules of `stage` that fire: the first match for route/adapter/budget, every match for note."""
    fired = [rule for rule in rules if rule["stage"] == stage and matches(rule, facts)]
    return fired if stage == "note" else fired[:1]


def render(text: str, facts: dict[str, Any]) -> str:
    """Fill {fact} placeholders (validated on load to be plain fact names)."""
    return " ".join(_FIELD.sub(lambda m: _show(facts.get(m.group(1))), text).split())


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def describe_when(when: dict[str, Any]) -> str:
    parts = []
    for fact, test in when.items():
        if isinstance(test, dict):
            op, value = next(iter(test.items()))
        elif isinstance(test, list):
            op, value = "in", test
        else:
            op, value = "eq", test
        if isinstance(value, list):
            shown = "[" + ", ".join(map(str, value)) + "]"
        elif isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, (int, float)):
            shown = f"{value:,}"
        else:
            shown = str(value)
        parts.append(f"{fact} {OPERATOR_TEXT[op]} {shown}")
    return " and ".join(parts)


def describe_recommend(recommend: dict[str, Any]) -> str:
    return ", ".join(f"{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in recommend.items()) or "(adds a reason)"


# ----------------------------------------------------------------------------------------------- advising

def _count_text(value: float) -> str:
    from rung.advisor.estimator import human_count

    return human_count(value)


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}" if value < 100 else f"${value:,.0f}"


def base_facts(answers: dict[str, Any], params_b: float) -> dict[str, Any]:
    facts = dict(answers)
    per_day = answers["prompt_tokens"] * answers["requests_per_day"]
    facts.update(
        prompt_tokens_per_day=per_day,
        prompt_tokens_per_day_text=_count_text(per_day),
        domain_corpus_tokens_text=_count_text(answers["domain_corpus_tokens"]),
        params_b=params_b,
        has_gpu=answers["gpu_memory_gb"] > 0 and answers["gpu_count"] > 0,
        gpu_total_gb=answers["gpu_memory_gb"] * answers["gpu_count"],
        budget_text=_money(answers["budget_usd"]),
    )
    return facts


def advise(answers: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The recommendation for validated answers (advisor.answers.validate_answers fills the defaults).

    Returns {route, method, adapter, collect, corpus_as_documents, generate_pairs, rules: [{id, because}],
    warnings, flip_when, estimate, stepped_down_from}.
    """
    from rung.advisor import estimator

    rules = rules if rules is not None else load_rules()
    shape = estimator.model_shape(answers.get("base_model"), answers.get("base_model_params_b"))
    facts = base_facts(answers, shape.params_b)
    fired: list[dict[str, Any]] = []

    route_rules = evaluate(rules, facts, "route")
    if not route_rules:  # rules.yaml covers every goal; a test walks them all
        raise RungError(f"no route rule matched goal {answers.get('goal')!r}: rules.yaml is incomplete")
    decision = {"route": None, "method": None, "adapter": None, "collect": None,
                "corpus_as_documents": False, "generate_pairs": False}
    decision.update({k: v for k, v in route_rules[0]["recommend"].items() if k != "step_down"})
    fired.append(route_rules[0])
    facts.update(route=decision["route"], method=decision["method"])

    facts.update(estimator.memory_facts(shape, decision["method"], decision["route"],
                                        answers["gpu_memory_gb"], answers["gpu_count"]))
    if decision["route"] in TRAINING_ROUTES:
        adapter_rules = evaluate(rules, facts, "adapter")
        if adapter_rules:
            decision["adapter"] = adapter_rules[0]["recommend"]["adapter"]
            fired.append(adapter_rules[0])
    facts["adapter"] = decision["adapter"]

    estimate = estimator.route_estimate(answers, shape, decision)
    cost = estimate.get("cost_usd") or 0.0
    facts.update(route_cost_usd=cost, route_cost_text=_money(cost), estimate_gpu=estimate.get("gpu") or "GPU",
                 over_budget=answers["budget_usd"] is not None and cost > answers["budget_usd"])
    stepped_down_from = None
    budget_rules = evaluate(rules, facts, "budget")
    if budget_rules:
        rule = budget_rules[0]
        fired.append(rule)
        stepped_down_from = {"route": decision["route"], "method": decision["method"],
                             "adapter": decision["adapter"], "cost_usd": cost, "budget_usd": answers["budget_usd"]}
        decision.update(method=None, adapter=None, generate_pairs=False,
                        collect="examples" if decision["route"] == "fine_tuning" else None)
        decision.update({k: v for k, v in rule["recommend"].items() if k != "step_down"})
        facts.update(route=decision["route"], method=None, adapter=None)
        estimate = estimator.route_estimate(answers, shape, decision)
    fired += evaluate(rules, facts, "note")

    warnings = [render(rule["warning"], facts) for rule in fired if rule.get("warning")]
    if estimate.get("fits") is False and decision["route"] in TRAINING_ROUTES:
        warnings.append(f"The estimated {estimate['memory_gb']:.1f} GB per GPU does not fit "
                        f"{answers['gpu_memory_gb']:g} GB: " + "; or ".join(estimate.get("suggestions") or []))
    flips: list[str] = []
    for rule in fired:
        for text in rule.get("flip_when", []):
            line = render(text, facts)
            if line not in flips:
                flips.append(line)
    return {
        **decision,
        "rules": [{"id": rule["id"], "because": render(rule["because"], facts)} for rule in fired],
        "warnings": warnings,
        "flip_when": flips,
        "estimate": estimate,
        "stepped_down_from": stepped_down_from,
        "model": {"params_b": shape.params_b, "layers": shape.layers, "hidden": shape.hidden,
                  "vocab": shape.vocab, "source": shape.source, "like": shape.like},
    }
