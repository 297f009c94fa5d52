"""GRPO in the advisor: the checker answer decides between GRPO and the methods without one, the questionnaire asks
for it only where a route rule tests it, and the plan ends a GRPO step with the gate."""

from __future__ import annotations

import pytest

from rung.advisor.answers import validate_answers
from rung.advisor.planner import build_plan
from rung.advisor.questionnaire import QUESTIONS
from rung.advisor.rulebook import RULES_ENV
from rung.advisor.rules import advise
from rung.core.plan import validate_plan

from .advisor_cases import CASES

CHECKER_CASES = [case for case in CASES if (case[1].get("automatic_checker"))]


@pytest.fixture(autouse=True)
def shipped_rules(monkeypatch):
    monkeypatch.delenv(RULES_ENV, raising=False)


def advice(raw: dict) -> dict:
    answers, problems = validate_answers(raw)
    assert not problems, problems
    return advise(answers)


@pytest.mark.parametrize("case", CHECKER_CASES, ids=[c[0] for c in CHECKER_CASES])
def test_without_the_checker_the_method_is_not_grpo(case):
    _, raw, _, method, _, _ = case
    assert method in ("grpo", "sft_then_grpo")
    without = advice({**raw, "automatic_checker": False})
    assert without["method"] not in ("grpo", "sft_then_grpo")
    assert not any("checker" in r["id"] for r in without["rules"])


def test_ranked_pairs_without_a_checker_stay_dpo_and_with_one_go_grpo():
    pairs = {"goal": "preferences", "preference_pairs": 400, "labeled_examples": 0, "gpu_memory_gb": 80,
             "gpu_count": 1}
    assert advice(pairs)["method"] == "dpo"
    assert advice({**pairs, "automatic_checker": True})["method"] == "grpo"


def test_a_checker_does_not_rescue_a_model_that_fails():
    # GRPO reinforces what the model sometimes gets right: nothing right, nothing to reinforce
    result = advice({"goal": "schema", "prompting_result": "fails", "automatic_checker": True})
    assert result["route"] == "bigger_model"


def checker_question():
    return next(when for key, _, when in QUESTIONS if key == "automatic_checker")


@pytest.mark.parametrize("so_far, asked", [
    ({"goal": "domain_task", "prompting_result": "inconsistent"}, True),
    ({"goal": "preferences", "prompting_result": "untried"}, True),
    ({"goal": "style", "prompting_result": "untried"}, False),      # prompting first fires whatever the answer
    ({"goal": "schema", "prompting_result": "fails"}, False),       # a bigger model first
    ({"goal": "facts", "prompting_result": "untried"}, False),
    ({"goal": "domain_language", "prompting_result": "untried"}, False),
])
def test_the_checker_is_asked_only_where_a_rule_tests_it(so_far, asked):
    assert checker_question()(so_far) is asked


def test_the_grpo_estimate_counts_the_generations():
    base = {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 1000,
            "gpu_memory_gb": 80, "gpu_count": 1}
    sft = advice(base)["estimate"]
    both = advice({**base, "automatic_checker": True})["estimate"]
    grpo = next(s for s in both["steps"] if s["step"] == "grpo")
    # 1,000 prompts x 8 generations x 512 tokens x (1 + 3 decode) vs 1,000 x 512 x 3 SFT epochs
    assert grpo["tokens"] == 1000 * 8 * 512 * 4 and sft["training_tokens"] == 1000 * 512 * 3
    assert both["cost_usd"] > sft["cost_usd"]


@pytest.mark.parametrize("method_case", ["task-checker-grpo", "schema-checker-sft-grpo"])
def test_a_grpo_plan_ends_with_the_gate(method_case, tmp_path):
    raw = next(case[1] for case in CASES if case[0] == method_case)
    answers, _ = validate_answers(raw)
    plan, _, _ = build_plan(answers, tmp_path / "plan")
    engines = [step["engine"] for step in plan["steps"]]
    assert engines[-2:] == ["grpo", "gate"]
    gate = plan["steps"][-1]
    assert gate["from_step"] == "grpo"
    if plan["method"] == "sft_then_grpo":
        assert engines[0] == "sft" and plan["steps"][-2]["from_step"] == "sft"
    assert plan["data"]["train"] == "data/train.jsonl"
    assert validate_plan(plan) == []
