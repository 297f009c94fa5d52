"""The rule evaluator: a rule book in, a recommendation out. Pure: no I/O past loading the rule file.

A rule is `{id, stage, when, recommend, because, warning?, flip_when?}` (advisor/rulebook.py loads and checks them).
`when` maps a fact to a test; a test is a value (equals), a list (one of) or `{op: value}` with op in OPERATORS — a
closed set, nothing else runs — and a value may be a `$threshold`. Stages run in order (STAGES): `route` and
`adapter` and `budget` take the first matching rule, `note` takes every match. `advise()` computes the facts
(answers + derived ones), runs the stages and asks the estimator for the figures the adapter and budget stages need.
`could_pick()` asks the route rules whether partial answers can still end on some routes (the questionnaire's
gating).
"""

from __future__ import annotations

from typing import Any

from rung.advisor.render import money
from rung.advisor.rulebook import (FIELD, OPERATOR_TEXT, OPERATORS, RULES_FILE, STAGES, RuleBook, is_reference,
                                   load_rulebook, load_rules, resolve, threshold_text)
from rung.core.errors import RungError
from rung.core.fileio import short
from rung.core.vocab import TRAINING_ROUTES

__all__ = ["RULES_FILE", "STAGES", "advise", "answer_facts", "could_pick", "describe_recommend", "describe_when",
           "evaluate", "fill_thresholds", "load_rulebook", "load_rules", "matches", "render", "test_holds"]


# ----------------------------------------------------------------------------------------------- evaluating

def test_holds(test: Any, fact: Any, thresholds: dict[str, Any]) -> bool:
    if isinstance(test, dict):
        op, value = next(iter(test.items()))
        try:
            return bool(OPERATORS[op](fact, resolve(value, thresholds)))
        except TypeError:
            return False
    if isinstance(test, list):
        return fact in resolve(test, thresholds)
    return fact == resolve(test, thresholds)


def matches(rule: dict[str, Any], facts: dict[str, Any], thresholds: dict[str, Any]) -> bool:
    return all(test_holds(test, facts.get(fact), thresholds) for fact, test in rule["when"].items())


def evaluate(book: RuleBook, facts: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """The rules of `stage` that fire: the first match for route/adapter/budget, every match for note."""
    fired = [rule for rule in book.rules if rule["stage"] == stage and matches(rule, facts, book.thresholds)]
    return fired if stage == "note" else fired[:1]


def could_pick(book: RuleBook, facts: dict[str, Any], routes: tuple[str, ...]) -> bool:
    """Could the route stage still pick one of `routes`? A fact missing from `facts` is not known yet.

    The route rules are walked in order, as evaluate() does: a rule with a known test that fails cannot fire; a rule
    whose known tests hold may fire (True if it picks one of `routes`); a rule that tests only known facts and holds
    fires for certain, so nothing after it can (False unless it picks one of `routes`).
    """
    for rule, certain in _route_rules_that_may_fire(book, facts):
        if rule["recommend"]["route"] in routes:
            return True
        if certain:
            return False
    return False


def could_turn_on(book: RuleBook, facts: dict[str, Any], fact: str) -> bool:
    """Could a route rule that tests `fact` still fire for these facts? Then asking for `fact` can change the route.

    The same walk as could_pick: a rule whose known tests fail cannot fire, the first that tests `fact` and may fire
    answers True, and a rule that certainly fires before any such rule answers False."""
    for rule, certain in _route_rules_that_may_fire(book, facts):
        if fact in rule["when"] and fact not in facts:
            return True
        if certain:
            return False
    return False


def _route_rules_that_may_fire(book: RuleBook, facts: dict[str, Any]):
    """The route rules, in order, whose tests on the known facts hold: (rule, certain), certain when the rule tests
    only known facts (it fires, so no later rule can)."""
    for rule in book.rules:
        if rule["stage"] != "route":
            continue
        known = {name: test for name, test in rule["when"].items() if name in facts}
        if matches({"when": known}, facts, book.thresholds):
            yield rule, len(known) == len(rule["when"])


def render(text: str, facts: dict[str, Any], thresholds: dict[str, Any]) -> str:
    """Fill {fact} and {threshold} placeholders (validated on load to be plain names of either)."""
    def fill(match: Any) -> str:
        name = match.group(1)
        return threshold_text(thresholds[name]) if name in thresholds else _show(facts.get(name))

    return " ".join(FIELD.sub(fill, text).split())


def fill_thresholds(text: str, thresholds: dict[str, Any]) -> str:
    """Fill only the {threshold} placeholders (`rung rules` shows facts as {fact} and thresholds as numbers)."""
    return FIELD.sub(lambda m: threshold_text(thresholds[m.group(1)]) if m.group(1) in thresholds else m.group(0), text)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def describe_when(when: dict[str, Any], thresholds: dict[str, Any] | None = None) -> str:
    """A `when` as a condition: `goal = facts and ...`; a $threshold shows its number, then its name."""
    parts = []
    for fact, test in when.items():
        if isinstance(test, dict):
            op, value = next(iter(test.items()))
        elif isinstance(test, list):
            op, value = "in", test
        else:
            op, value = "eq", test
        parts.append(f"{fact} {OPERATOR_TEXT[op]} {_describe_value(value, thresholds or {})}")
    return " and ".join(parts)


def _describe_value(value: Any, thresholds: dict[str, Any]) -> str:
    if is_reference(value):
        number = thresholds.get(value[1:])
        return value if number is None else f"{_describe_value(number, thresholds)} ({value})"
    if isinstance(value, list):
        return "[" + ", ".join(_describe_value(v, thresholds) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:,}"
    return str(value)


def describe_recommend(recommend: dict[str, Any]) -> str:
    return ", ".join(f"{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in recommend.items()) or "(adds a reason)"


# ----------------------------------------------------------------------------------------------- advising

def _count_text(value: float) -> str:
    from rung.advisor.estimate_math import human_count

    return human_count(value)


def answer_facts(answers: dict[str, Any]) -> dict[str, Any]:
    """The answers plus every derived fact whose answers are all given (answers may be partial: see could_pick)."""
    facts = dict(answers)
    if "prompt_tokens" in answers and "requests_per_day" in answers:
        per_day = answers["prompt_tokens"] * answers["requests_per_day"]
        facts.update(prompt_tokens_per_day=per_day, prompt_tokens_per_day_text=_count_text(per_day))
    if "domain_corpus_tokens" in answers:
        facts["domain_corpus_tokens_text"] = _count_text(answers["domain_corpus_tokens"])
    if "gpu_memory_gb" in answers and "gpu_count" in answers:
        facts.update(has_gpu=answers["gpu_memory_gb"] > 0 and answers["gpu_count"] > 0,
                     gpu_total_gb=answers["gpu_memory_gb"] * answers["gpu_count"])
    if "budget_usd" in answers:
        facts["budget_text"] = money(answers["budget_usd"])
    return facts


def advise(answers: dict[str, Any], book: RuleBook | None = None,
           evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recommendation for validated answers (advisor.answers.validate_answers fills the defaults) and, when
    given, measured evidence (advisor.evidence.load_evidence), whose derived prompting_result replaces the answer.

    The stages run in order, each the first matching rule of its stage: evidence, route, adapter (training
    routes), budget (a step down), then every matching note. Returns {route, method, adapter, collect,
    corpus_as_documents, generate_pairs, rules: [{id, because}], warnings, flip_when, estimate,
    stepped_down_from, evidence, model}.
    """
    from rung.advisor import estimator
    from rung.advisor.evidence import evidence_facts

    book = book if book is not None else load_rulebook()
    shape = estimator.model_shape(answers.get("base_model"), answers.get("base_model_params_b"))
    facts = answer_facts(answers)
    facts.update(evidence_facts(evidence))
    facts["params_b"] = shape.params_b
    fired: list[dict[str, Any]] = []
    answers, evidence_summary = _evidence_stage(book, facts, answers, evidence, fired)
    decision = _route_stage(book, facts, answers, fired)
    facts.update(estimator.memory_facts(shape, decision["method"], decision["route"],
                                        answers["gpu_memory_gb"], answers["gpu_count"]))
    if decision["route"] in TRAINING_ROUTES:
        adapter_rules = evaluate(book, facts, "adapter")
        if adapter_rules:
            decision["adapter"] = adapter_rules[0]["recommend"]["adapter"]
            fired.append(adapter_rules[0])
    facts["adapter"] = decision["adapter"]
    estimate, stepped_down_from = _budget_stage(book, facts, answers, shape, decision, fired)
    fired += evaluate(book, facts, "note")
    warnings = [render(rule["warning"], facts, book.thresholds) for rule in fired if rule.get("warning")]
    if estimate.get("fits") is False and decision["route"] in TRAINING_ROUTES:
        warnings.append(f"The estimated {estimate['memory_gb']:.1f} GB per GPU does not fit "
                        f"{answers['gpu_memory_gb']:g} GB: " + "; or ".join(estimate.get("suggestions") or []))
    flips: list[str] = []
    for rule in fired:
        for text in rule.get("flip_when", []):
            line = render(text, facts, book.thresholds)
            if line not in flips:
                flips.append(line)
    return {
        **decision,
        "rules": [{"id": rule["id"], "because": render(rule["because"], facts, book.thresholds)} for rule in fired],
        "warnings": warnings,
        "flip_when": flips,
        "estimate": estimate,
        "stepped_down_from": stepped_down_from,
        "evidence": evidence_summary,
        "model": {"params_b": shape.params_b, "layers": shape.layers, "hidden": shape.hidden,
                  "vocab": shape.vocab, "source": shape.source, "like": shape.like},
    }


def _evidence_stage(book: RuleBook, facts: dict[str, Any], answers: dict[str, Any], evidence: dict[str, Any] | None,
                    fired: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Measured evidence decides prompting_result (the first evidence rule); it replaces the answer, in the
    answers and the facts the later stages read. Returns (answers, the evidence summary or None)."""
    from rung.advisor.evidence import summary

    if not evidence:
        return answers, None
    derived = replaced = None
    evidence_rules = evaluate(book, facts, "evidence")
    if evidence_rules:
        fired.append(evidence_rules[0])
        derived = evidence_rules[0]["recommend"]["prompting_result"]
        replaced = answers.get("prompting_result") if answers.get("prompting_result") != derived else None
        answers = {**answers, "prompting_result": derived}
        facts["prompting_result"] = derived
    return answers, summary(evidence, derived, replaced)


def _route_stage(book: RuleBook, facts: dict[str, Any], answers: dict[str, Any],
                 fired: list[dict[str, Any]]) -> dict[str, Any]:
    """The first route rule that matches decides route, method and what to collect."""
    route_rules = evaluate(book, facts, "route")
    if not route_rules:  # rules.yaml covers every goal; a test walks them all
        raise RungError(f"no route rule matched goal {short(answers.get('goal'))}: {book.path} is incomplete")
    decision = {"route": None, "method": None, "adapter": None, "collect": None,
                "corpus_as_documents": False, "generate_pairs": False}
    decision.update({k: v for k, v in route_rules[0]["recommend"].items() if k != "step_down"})
    fired.append(route_rules[0])
    facts.update(route=decision["route"], method=decision["method"])
    return decision


def _budget_stage(book: RuleBook, facts: dict[str, Any], answers: dict[str, Any], shape: Any,
                  decision: dict[str, Any], fired: list[dict[str, Any]]) -> tuple[dict[str, Any], dict | None]:
    """The route's estimate; over the budget, the first budget rule steps down to a cheaper route (decision is
    changed in place) and the estimate is made again. Returns (estimate, what was stepped down from or None)."""
    from rung.advisor import estimator

    estimate = estimator.route_estimate(answers, shape, decision)
    cost = estimate.get("cost_usd") or 0.0
    facts.update(route_cost_usd=cost, route_cost_text=money(cost), estimate_gpu=estimate.get("gpu") or "GPU",
                 over_budget=answers["budget_usd"] is not None and cost > answers["budget_usd"])
    budget_rules = evaluate(book, facts, "budget")
    if not budget_rules:
        return estimate, None
    rule = budget_rules[0]
    fired.append(rule)
    stepped_down_from = {"route": decision["route"], "method": decision["method"],
                         "adapter": decision["adapter"], "cost_usd": cost, "budget_usd": answers["budget_usd"]}
    decision.update(method=None, adapter=None, generate_pairs=False,
                    collect="examples" if decision["route"] == "fine_tuning" else None)
    decision.update({k: v for k, v in rule["recommend"].items() if k != "step_down"})
    facts.update(route=decision["route"], method=None, adapter=None)
    return estimator.route_estimate(answers, shape, decision), stepped_down_from
