"""The rules: one table-driven test per rule id, every rule covered, every route reachable, rules.yaml validated."""

from __future__ import annotations

import itertools

import pytest
import yaml

from rung.advisor.answers import GOALS, PROMPTING_RESULTS, validate_answers
from rung.core.errors import RungError
from rung.core.plan import ROUTES
from rung.advisor.rulebook import RULES_FILE, load_rulebook, load_rules, validate_rulebook, validate_rules
from rung.advisor.rules import advise, describe_when
from .advisor_cases import CASES, ISSUE_EXAMPLES


def run(raw: dict) -> dict:
    answers, problems = validate_answers(raw)
    assert not problems, problems
    return advise(answers)


@pytest.mark.parametrize("case_id, raw, route, method, adapter, rule_id", CASES, ids=[c[0] for c in CASES])
def test_rule_table(case_id, raw, route, method, adapter, rule_id):
    result = run(raw)
    fired = [r["id"] for r in result["rules"]]
    assert (result["route"], result["method"], result["adapter"]) == (route, method, adapter), fired
    assert rule_id in fired
    assert all(r["because"] and "{" not in r["because"] for r in result["rules"])  # placeholders filled


def test_every_rule_has_a_case():
    # rules on measured evidence have their own table (tests/advisor/test_evidence.py checks its coverage)
    ids = {rule["id"] for rule in load_rules() if not any(fact.startswith("evidence_") for fact in rule["when"])}
    covered = {case[5] for case in CASES}
    assert ids - covered == set(), f"rules without a table case: {sorted(ids - covered)}"
    assert covered - ids == set()


def test_every_route_is_reachable():
    assert {case[2] for case in CASES} == set(ROUTES)


@pytest.mark.parametrize("raw, expected", ISSUE_EXAMPLES)
def test_issue_examples(raw, expected):
    result = run(raw)
    assert (result["route"], result["method"], result["adapter"]) == expected


def test_every_goal_and_prompting_result_gets_a_route():
    for goal, result_kind in itertools.product(GOALS, PROMPTING_RESULTS):
        result = run({"goal": goal, "prompting_result": result_kind})
        assert result["route"] in ROUTES


def test_thresholds_are_exact():
    base = {"goal": "domain_task", "prompting_result": "inconsistent"}
    assert run({**base, "labeled_examples": 99})["route"] == "prompting"
    assert run({**base, "labeled_examples": 100})["route"] == "fine_tuning"
    assert run({"goal": "domain_language", "domain_corpus_tokens": 49_999_999})["route"] == "rag"
    assert run({"goal": "domain_language", "domain_corpus_tokens": 50_000_000})["route"] == "continued_pretraining"


def test_facts_warns_against_fine_tuning():
    result = run({"goal": "facts", "knowledge_changes": "often", "private_data": True})
    assert any("poor, expensive way to add knowledge" in w for w in result["warnings"])
    assert [r["id"] for r in result["rules"]] == ["facts-rag", "facts-changing", "facts-private"]


def test_budget_step_down_names_both_figures():
    result = run({"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
                  "budget_usd": 0.01, "gpu_memory_gb": 80, "gpu_count": 1})
    reason = next(r["because"] for r in result["rules"] if r["id"] == "budget-ft-to-prompting")
    cost = result["stepped_down_from"]["cost_usd"]
    assert cost > 0.01
    assert f"${cost:,.2f}" in reason and "$0.01" in reason
    assert result["method"] is None and result["adapter"] is None


def test_cpt_step_down_to_rag_over_corpus():
    result = run({"goal": "domain_language", "domain_corpus_tokens": 2_000_000_000, "gpu_memory_gb": 80,
                  "gpu_count": 8, "budget_usd": 10})
    assert result["route"] == "rag" and result["corpus_as_documents"] is True
    assert result["stepped_down_from"]["route"] == "continued_pretraining"
    assert any(f.startswith("budget_usd of at least $") for f in result["flip_when"])


def test_qlora_reason_names_both_footprints():
    result = run({"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
                  "gpu_memory_gb": 16, "gpu_count": 1, "base_model_params_b": 7})
    reason = next(r["because"] for r in result["rules"] if r["id"] == "adapter-qlora")
    assert "16 GB you have" in reason and "QLoRA" in reason


def test_more_gpus_make_lora_fit():
    one = run({"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
               "gpu_memory_gb": 16, "gpu_count": 1, "base_model_params_b": 7})
    two = run({"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 2000,
               "gpu_memory_gb": 16, "gpu_count": 2, "base_model_params_b": 7})
    assert (one["adapter"], two["adapter"]) == ("qlora", "lora")


def test_result_has_the_json_contract_keys():
    result = run({"goal": "style"})
    for key in ("route", "method", "adapter", "rules", "warnings", "flip_when", "estimate"):
        assert key in result
    assert result["flip_when"]


def test_shipped_rules_validate_and_are_ordered():
    book = load_rulebook(RULES_FILE)
    assert not validate_rulebook({"thresholds": book.thresholds, "rules": book.rules})
    stages = [r["stage"] for r in book.rules]
    assert stages == sorted(stages, key=["evidence", "route", "adapter", "budget", "note"].index)


def test_validation_reports_every_problem(tmp_path):
    broken = [
        {"id": "a", "stage": "route", "when": {"goal": "factz"}, "recommend": {"route": "rag"}, "because": "x"},
        {"id": "a", "stage": "route", "when": {"gaol": "facts"}, "recommend": {"route": "ragg"}, "because": "x"},
        {"id": "b", "stage": "sometimes", "when": {"labeled_examples": {"between": 3}}, "because": ""},
        {"id": "c", "stage": "adapter", "when": {"goal": {"gte": 3}}, "recommend": {"adapter": "lora"},
         "because": "uses {nope} and {labeled_examples.__class__}"},
        {"id": "d", "stage": "note", "when": {"has_gpu": "yes"}, "because": "ok", "extra": 1},
    ]
    problems = validate_rules(broken, {"min_labeled_examples": 100}, where="r.yaml")
    text = "\n".join(problems)
    for expected in ['"factz" is not a value of goal', 'did you mean "facts"', 'duplicate id "a"',
                     'unknown fact "gaol"', '"ragg" is not one of', 'stage "sometimes"', 'unknown operator "between"',
                     "because: expected a sentence", "gte compares numbers", "unknown fact or threshold {nope}",
                     "only plain {fact} or {threshold} names", "has_gpu is true/false", 'unknown key "extra"']:
        assert expected in text, expected
    path = tmp_path / "rules.yaml"
    thresholds = {"min_labeled_examples": 100, "min_preference_pairs": 200, "min_cpt_tokens": 50_000_000,
                  "min_prompt_tokens_per_day": 10_000_000}
    path.write_text(yaml.safe_dump({"thresholds": thresholds, "rules": broken}))
    with pytest.raises(RungError) as error:
        load_rules(path)
    assert len(error.value.message.splitlines()) == len(problems) >= 12


def test_malformed_rules_file_names_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n- id: a\n  when: {goal: [facts\n")
    with pytest.raises(RungError, match=r"rules.yaml:\d+:\d+: malformed YAML"):
        load_rules(path)


def test_describe_when_reads_like_a_condition():
    assert describe_when({"goal": "facts", "domain_corpus_tokens": {"gte": 50_000_000}}) == \
        "goal = facts and domain_corpus_tokens >= 50,000,000"
    assert describe_when({"labeled_examples": {"lt": "$min_labeled_examples"}}, {"min_labeled_examples": 100}) == \
        "labeled_examples < 100 ($min_labeled_examples)"
    assert RULES_FILE.exists()
