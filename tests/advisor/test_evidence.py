"""Measured evidence changes the advice: one table-driven case per evidence rule, boundaries included, the
`--json` evidence object, PLAN.md, and malformed evidence files (exit 2, every problem named)."""

from __future__ import annotations

import json

import pytest
import yaml

from rung.advisor.answers import validate_answers
from rung.advisor.rulebook import load_rulebook
from rung.advisor.rules import advise

TARGET = 0.9


def evidence(**rungs: float) -> dict:
    return {"version": 1, "metric": "exact_match", "target": TARGET, "n": 40,
            "rungs": {name: {"score": score} for name, score in rungs.items()}}


def run(answers: dict, ev: dict | None):
    validated, problems = validate_answers(answers)
    assert problems == []
    return advise(validated, evidence=ev)


BEHAVIOUR = {"goal": "schema", "prompting_result": "good_enough", "labeled_examples": 500}

# (case, answers, evidence rungs, expected evidence rule, derived prompting_result, route)
CASES = [
    ("few-shot at the target is good enough", BEHAVIOUR, {"zero_shot": 0.3, "few_shot": TARGET},
     "evidence-prompting-good-enough", "good_enough", "prompting"),
    ("zero-shot alone can reach the target", {**BEHAVIOUR, "prompting_result": "fails"}, {"zero_shot": 0.95},
     "evidence-prompting-good-enough", "good_enough", "prompting"),
    ("just below the target is inconsistent", BEHAVIOUR, {"few_shot": 0.8999},
     "evidence-prompting-inconsistent", "inconsistent", "fine_tuning"),
    ("the best of zero- and few-shot counts", BEHAVIOUR, {"zero_shot": 0.62, "few_shot": 0.2},
     "evidence-prompting-inconsistent", "inconsistent", "fine_tuning"),
    ("exactly 0.10 is inconsistent, not fails", BEHAVIOUR, {"few_shot": 0.10},
     "evidence-prompting-inconsistent", "inconsistent", "fine_tuning"),
    ("below 0.10 fails: a bigger model", BEHAVIOUR, {"zero_shot": 0.05, "few_shot": 0.0999},
     "evidence-prompting-fails", "fails", "bigger_model"),
    ("RAG at the target wins where prompts do not", BEHAVIOUR, {"few_shot": 0.62, "rag": TARGET},
     "evidence-prompting-inconsistent", "inconsistent", "rag"),
    ("RAG below the target: the rest of the rules run", BEHAVIOUR, {"few_shot": 0.62, "rag": 0.8999},
     "evidence-prompting-inconsistent", "inconsistent", "fine_tuning"),
    ("a good prompt beats RAG: the cheaper rung", {**BEHAVIOUR, "prompting_result": "inconsistent"},
     {"few_shot": 0.95, "rag": 0.99}, "evidence-prompting-good-enough", "good_enough", "prompting"),
    ("inconsistent with few examples: collect them", {"goal": "style", "prompting_result": "untried"},
     {"few_shot": 0.5}, "evidence-prompting-inconsistent", "inconsistent", "prompting"),
]


@pytest.mark.parametrize("case, answers, rungs, rule_id, derived, route", CASES, ids=[c[0] for c in CASES])
def test_each_evidence_rule(case, answers, rungs, rule_id, derived, route):
    result = run(answers, evidence(**rungs))
    fired = [rule["id"] for rule in result["rules"]]
    assert fired[0] == rule_id
    assert result["evidence"]["prompting_result"] == derived
    assert result["route"] == route
    if "rag" in rungs and rungs["rag"] >= TARGET and derived != "good_enough":
        assert fired[1] == "evidence-rag"
    replaced = answers["prompting_result"] if answers["prompting_result"] != derived else None
    assert result["evidence"]["replaced_answer"] == replaced


def test_the_reason_cites_the_numbers():
    ev = evidence(zero_shot=0.31, few_shot=0.62)
    ev["rungs"]["few_shot"]["ci"] = [0.47, 0.76]
    result = run(BEHAVIOUR, ev)
    assert "few-shot scored 0.62 [0.47, 0.76] on 40 held-out rows (exact_match); target 0.90" in result["rules"][0]["because"]


def test_without_evidence_no_evidence_rule_fires_and_the_answer_stands():
    result = run(BEHAVIOUR, None)
    assert result["evidence"] is None and result["route"] == "prompting"
    assert not any(rule["id"].startswith("evidence") for rule in result["rules"])


def test_every_evidence_rule_is_covered_by_a_case():
    book = load_rulebook()
    evidence_rules = {r["id"] for r in book.rules if r["id"].startswith("evidence")}
    covered = {c[3] for c in CASES} | {"evidence-rag"}
    assert evidence_rules == covered


def test_cli_text_and_json_say_the_evidence_replaced_the_answer(rung, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(BEHAVIOUR))
    ev = tmp_path / "evidence.yaml"
    ev.write_text(yaml.safe_dump(evidence(zero_shot=0.31, few_shot=0.62)))
    text = rung("advise", "--answers", answers, "--evidence", ev)
    assert text.exit_code == 0, text.output
    assert "Recommendation: fine_tuning" in text.output
    assert "replaces your answer prompting_result: good_enough" in " ".join(text.output.split())
    data = json.loads(rung("advise", "--answers", answers, "--evidence", ev, "--json").output)
    assert data["evidence"]["prompting_result"] == "inconsistent"
    assert data["evidence"]["replaced_answer"] == "good_enough"
    assert data["evidence"]["scores"]["few_shot"] == {"score": 0.62}


def test_plan_records_the_evidence_and_plan_md_follows_it(rung, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(BEHAVIOUR))
    ev = tmp_path / "evidence.yaml"
    ev.write_text(yaml.safe_dump(evidence(few_shot=0.62)))
    result = rung("plan", "--answers", answers, "--evidence", ev, "--out", tmp_path / "plan")
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load((tmp_path / "plan" / "plan.yaml").read_text())
    assert plan["route"] == "fine_tuning" and plan["answers"]["prompting_result"] == "good_enough"
    assert plan["evidence"]["prompting_result"] == "inconsistent"
    md = (tmp_path / "plan" / "PLAN.md").read_text()
    assert "so prompting is **inconsistent**, not good enough as answered" in md
    from rung.core.plan import validate_plan

    assert validate_plan(plan) == []  # `evidence` is a known plan key


BAD = [
    ("version: 2\nmetric: m\ntarget: 0.9\nn: 4\nrungs: {few_shot: {score: 0.5}}\n", ["version must be 1"]),
    ("version: 1\nmetric: m\ntarget: 1.5\nn: 0\nrungs: {few_shot: {score: 0.5}}\n",
     ["target: expected a score in (0, 1]", "n: expected the number of held-out rows"]),
    ("version: 1\nmetric: m\ntarget: .nan\nn: 4\nrungs: {few_shot: {score: .nan}}\n",
     ["target: expected a score in (0, 1]", "rungs.few_shot.score: expected a number in [0, 1]"]),
    ("version: 1\nmetric: m\ntarget: 0.9\nn: 4\nrungs: {few_shoot: {score: 0.5}}\n",
     ['rungs: unknown rung (entry 1 of 1) (did you mean "few_shot"?)']),
    ("version: 1\nmetric: m\ntarget: 0.9\nn: 4\nrungs: {rag: {score: 0.5, ci: [0.6, 0.9]}}\n",
     ["does not contain the score 0.5"]),
    ("version: 1\nmetric: m\ntarget: 0.9\nn: 4\nrungs: {}\nextra: 1\n", ['unknown key (key 6 of 6)', "rungs: expected"]),
    ("- 1\n", ["expected a mapping"]),
]


@pytest.mark.parametrize("text, expected", BAD)
def test_malformed_evidence_is_one_clean_error_per_problem(rung, tmp_path, text, expected):
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(BEHAVIOUR))
    ev = tmp_path / "evidence.yaml"
    ev.write_text(text)
    result = rung("advise", "--answers", answers, "--evidence", ev)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    for line in expected:
        assert line in result.output


def test_the_shipped_example_evidence_changes_the_advice(rung):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "tone"
    before = rung("advise", "--answers", example / "answers.yaml", "--json")
    after = rung("advise", "--answers", example / "answers.yaml", "--evidence", example / "evidence.yaml", "--json")
    assert before.exit_code == after.exit_code == 0
    before_ids = [rule["id"] for rule in json.loads(before.output)["rules"]]
    after_ids = [rule["id"] for rule in json.loads(after.output)["rules"]]
    assert before_ids[0] == "prompting-first"
    assert after_ids[:2] == ["evidence-prompting-inconsistent", "inconsistent-few-shot"]
