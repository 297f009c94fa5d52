"""Every numeric boundary of every rule, pinned on both sides with the numbers written here (not read from
rules.yaml): 199/200 preference pairs, 99/100 labelled examples, 50M-1/50M corpus tokens, 10M-1/10M prompt tokens a
day, 9,999/10,000 examples for full fine-tuning; 99/100 demonstrations between GRPO and SFT then GRPO.

Two views of each boundary:
- the rule's own test (`test_holds` on its `when` entry): holds on one side, fails one unit away. This catches a
  changed threshold, a threshold replaced by a literal, and gte -> gt / lt -> lte, even in a rule that an earlier
  rule shadows at that boundary;
- the whole advisor (`advise`): the recommendation on each side, and which rule decided it.
A completeness check makes a new comparison on one of these counts in rules.yaml fail here until its boundary is
added to the table (COUNTED: comparisons on other facts, such as measured scores, are not this table's).
"""

from __future__ import annotations

import pytest

from rung.advisor.answers import validate_answers
from rung.advisor.rulebook import RULES_ENV, load_rulebook
from rung.advisor.rules import advise, test_holds as rule_test_holds

GPU80 = {"gpu_memory_gb": 80, "gpu_count": 1}
COMPARISONS = ("gte", "gt", "lte", "lt")
COUNTED = ("labeled_examples", "preference_pairs", "domain_corpus_tokens", "prompt_tokens_per_day")

# (rule id, fact, value where the rule's test holds, value one unit away where it fails, the other answers,
#  (route, method, adapter) when the rule decides, (route, method, adapter) and deciding rule on the other side).
# prompt_tokens_per_day is prompt_tokens x requests_per_day: 1,000 x 10,000 = 10M and 3 x 3,333,333 = 10M - 1.
TEN_M = {"prompt_tokens": 1000, "requests_per_day": 10_000}
TEN_M_LESS_1 = {"prompt_tokens": 3, "requests_per_day": 3_333_333}
BOUNDARIES = [
    # ---- min_preference_pairs (200)
    ("preferences-sft-dpo", "preference_pairs", 200, 199, {"goal": "preferences", "labeled_examples": 100, **GPU80},
     ("fine_tuning", "sft_then_dpo", "lora"), (("prompting", None, None), "preferences-collect")),
    ("preferences-dpo", "preference_pairs", 200, 199, {"goal": "preferences", "labeled_examples": 99, **GPU80},
     ("fine_tuning", "dpo", "lora"), (("prompting", None, None), "preferences-collect")),
    ("preferences-collect", "preference_pairs", 199, 200, {"goal": "preferences", "labeled_examples": 99, **GPU80},
     ("prompting", None, None), (("fine_tuning", "dpo", "lora"), "preferences-dpo")),
    ("inconsistent-sft-dpo", "preference_pairs", 200, 199,
     {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 100, **GPU80},
     ("fine_tuning", "sft_then_dpo", "lora"), (("fine_tuning", "sft", "lora"), "inconsistent-sft")),
    # ---- min_labeled_examples (100)
    ("preferences-sft-dpo", "labeled_examples", 100, 99, {"goal": "preferences", "preference_pairs": 200, **GPU80},
     ("fine_tuning", "sft_then_dpo", "lora"), (("fine_tuning", "dpo", "lora"), "preferences-dpo")),
    ("inconsistent-sft-dpo", "labeled_examples", 100, 99,
     {"goal": "style", "prompting_result": "inconsistent", "preference_pairs": 200, **GPU80},
     ("fine_tuning", "sft_then_dpo", "lora"), (("prompting", None, None), "inconsistent-few-shot")),
    ("inconsistent-sft", "labeled_examples", 100, 99,
     {"goal": "domain_task", "prompting_result": "inconsistent", "preference_pairs": 199, **GPU80},
     ("fine_tuning", "sft", "lora"), (("prompting", None, None), "inconsistent-few-shot")),
    ("inconsistent-few-shot", "labeled_examples", 99, 100,
     {"goal": "schema", "prompting_result": "inconsistent", **GPU80},
     ("prompting", None, None), (("fine_tuning", "sft", "lora"), "inconsistent-sft")),
    ("inconsistent-checker-sft-grpo", "labeled_examples", 100, 99,
     {"goal": "domain_task", "prompting_result": "inconsistent", "automatic_checker": True, **GPU80},
     ("fine_tuning", "sft_then_grpo", "lora"), (("fine_tuning", "grpo", "lora"), "inconsistent-checker-grpo")),
    ("preferences-checker-sft-grpo", "labeled_examples", 100, 99,
     {"goal": "preferences", "automatic_checker": True, "preference_pairs": 500, **GPU80},
     ("fine_tuning", "sft_then_grpo", "lora"), (("fine_tuning", "grpo", "lora"), "preferences-checker-grpo")),
    # ---- min_cpt_tokens (50M)
    ("domain-language-cpt", "domain_corpus_tokens", 50_000_000, 49_999_999, {"goal": "domain_language", **GPU80},
     ("continued_pretraining", None, "lora"), (("rag", None, None), "domain-language-rag")),
    ("domain-language-rag", "domain_corpus_tokens", 49_999_999, 50_000_000, {"goal": "domain_language", **GPU80},
     ("rag", None, None), (("continued_pretraining", None, "lora"), "domain-language-cpt")),
    # ---- min_prompt_tokens_per_day (10M)
    ("shorten-prompt-sft", "prompt_tokens_per_day", TEN_M, TEN_M_LESS_1, {"goal": "shorten_prompt", **GPU80},
     ("fine_tuning", "sft", "lora"), (("prompting", None, None), "shorten-prompt-caching")),
    ("shorten-prompt-caching", "prompt_tokens_per_day", TEN_M_LESS_1, TEN_M, {"goal": "shorten_prompt", **GPU80},
     ("prompting", None, None), (("fine_tuning", "sft", "lora"), "shorten-prompt-sft")),
    # ---- min_full_finetune_examples (10,000): an adapter-stage rule
    ("adapter-full", "labeled_examples", 10_000, 9_999,
     {"goal": "schema", "prompting_result": "inconsistent", "keep_general_skills": False, "base_model_params_b": 7,
      **GPU80},
     ("fine_tuning", "sft", "full"), (("fine_tuning", "sft", "lora"), "adapter-lora")),
]
IDS = [f"{row[0]}:{row[1]}" for row in BOUNDARIES]


@pytest.fixture(autouse=True)
def shipped_rules(monkeypatch):
    monkeypatch.delenv(RULES_ENV, raising=False)


def answers_with(fact: str, value, others: dict) -> dict:
    """The answers for one side of a boundary; a derived fact is given through the answers it comes from."""
    raw = {**others, **value} if isinstance(value, dict) else {**others, fact: value}
    answers, problems = validate_answers(raw)
    assert not problems, problems
    return answers


def fact_value(fact: str, value) -> int:
    return value["prompt_tokens"] * value["requests_per_day"] if isinstance(value, dict) else value


def shipped_rule(rule_id: str) -> dict:
    return next(rule for rule in load_rulebook().rules if rule["id"] == rule_id)


def test_every_comparison_in_the_rules_has_a_boundary_row():
    compared = {(rule["id"], fact) for rule in load_rulebook().rules for fact, test in rule["when"].items()
                if fact in COUNTED and isinstance(test, dict) and next(iter(test)) in COMPARISONS}
    table = {(row[0], row[1]) for row in BOUNDARIES}
    assert compared - table == set(), f"comparisons without a boundary row: {sorted(compared - table)}"
    assert table - compared == set(), f"rows for comparisons rules.yaml no longer has: {sorted(table - compared)}"
    assert len(table) == len(BOUNDARIES) == 15


@pytest.mark.parametrize("rule_id, fact, holds, fails, others, decided, otherwise", BOUNDARIES, ids=IDS)
def test_the_rules_own_test_flips_at_the_boundary(rule_id, fact, holds, fails, others, decided, otherwise):
    book = load_rulebook()
    test = shipped_rule(rule_id)["when"][fact]
    assert rule_test_holds(test, fact_value(fact, holds), book.thresholds), \
        f"{rule_id}: {fact} {test} should hold at {fact_value(fact, holds):,}"
    assert not rule_test_holds(test, fact_value(fact, fails), book.thresholds), \
        f"{rule_id}: {fact} {test} should fail at {fact_value(fact, fails):,}"


@pytest.mark.parametrize("rule_id, fact, holds, fails, others, decided, otherwise", BOUNDARIES, ids=IDS)
def test_the_advice_flips_at_the_boundary(rule_id, fact, holds, fails, others, decided, otherwise):
    stage_of = {rule["id"]: rule["stage"] for rule in load_rulebook().rules}

    def deciding(result: dict, stage: str) -> str:
        return next(r["id"] for r in result["rules"] if stage_of[r["id"]] == stage)

    stage = stage_of[rule_id]
    at = advise(answers_with(fact, holds, others))
    assert (at["route"], at["method"], at["adapter"]) == decided, [r["id"] for r in at["rules"]]
    assert deciding(at, stage) == rule_id
    away = advise(answers_with(fact, fails, others))
    other_decision, other_rule = otherwise
    assert (away["route"], away["method"], away["adapter"]) == other_decision, [r["id"] for r in away["rules"]]
    assert deciding(away, stage) == other_rule
    assert rule_id not in [r["id"] for r in away["rules"]]


def test_the_numbers_in_the_reasons_are_the_thresholds():
    """The reason names the threshold it crossed, as a number people read (200, 100, 50M, 10M)."""
    result = advise(answers_with("preference_pairs", 200, {"goal": "preferences", "labeled_examples": 100, **GPU80}))
    because = result["rules"][0]["because"]
    assert "200 preference pairs (>= 200) and 100 demonstrations (>= 100)" in because
    result = advise(answers_with("domain_corpus_tokens", 49_999_999, {"goal": "domain_language"}))
    assert "below the 50M tokens continued pretraining needs" in result["rules"][0]["because"]
    result = advise(answers_with("prompt_tokens_per_day", TEN_M_LESS_1, {"goal": "shorten_prompt"}))
    assert "is below the 10M a day that pays for fine-tuning" in result["rules"][0]["because"]
