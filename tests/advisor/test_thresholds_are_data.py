"""Thresholds are data: change one in a copy of rules.yaml, point RUNG_RULES at it, and advise, PLAN.md and the
questionnaire all follow. No threshold is written as a literal in advisor/*.py."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest
import yaml

from rung.advisor.rulebook import READ_BY_CODE, RULES_ENV, RULES_FILE, load_rulebook, threshold_text, validate_rulebook

ADVISOR = Path(RULES_FILE).parent
FEW = {"goal": "style", "prompting_result": "inconsistent", "labeled_examples": 60}  # between 50 and 100


@pytest.fixture
def lowered(tmp_path, monkeypatch):
    """A copy of the shipped rules with min_labeled_examples 100 -> 50, chosen through RUNG_RULES."""
    data = yaml.safe_load(RULES_FILE.read_text())
    assert data["thresholds"]["min_labeled_examples"] == 100
    data["thresholds"]["min_labeled_examples"] = 50
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv(RULES_ENV, str(path))
    return path


def write_answers(tmp_path: Path, answers: dict) -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump(answers))
    return path


def rungs_considered(plan_md: str) -> dict[str, str]:
    table = plan_md.split("## Rungs considered", 1)[1].split("## Steps", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return {rung.strip(): verdict.strip() for rung, verdict in rows[1:]}


def test_shipped_thresholds(monkeypatch):
    monkeypatch.delenv(RULES_ENV, raising=False)
    book = load_rulebook()
    assert book.path == str(RULES_FILE)
    assert {name: book.thresholds[name] for name in READ_BY_CODE} == {
        "min_labeled_examples": 100, "min_preference_pairs": 200, "min_cpt_tokens": 50_000_000,
        "min_prompt_tokens_per_day": 10_000_000}
    assert [book.show(name) for name in READ_BY_CODE] == ["100", "200", "50M", "10M"]


def test_shipped_rules_keep_60_examples_on_prompting(rung, tmp_path, monkeypatch):
    monkeypatch.delenv(RULES_ENV, raising=False)
    result = rung("advise", "--answers", write_answers(tmp_path, FEW))
    assert result.stdout.startswith("Recommendation: prompting")
    assert "60 labeled examples is below the 100 fine-tuning needs" in result.stdout
    rung("plan", "--answers", tmp_path / "answers.yaml", "--out", tmp_path / "plan")
    verdicts = rungs_considered((tmp_path / "plan" / "PLAN.md").read_text())
    assert verdicts["fine_tuning"] == "needs 100+ labelled examples (you have 60)"


def test_advise_follows_the_threshold(rung, tmp_path, lowered):
    result = rung("advise", "--answers", write_answers(tmp_path, FEW))
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("Recommendation: fine_tuning (method sft, adapter lora)")
    assert "there are 60 labeled examples (>= 50): supervised fine-tuning" in " ".join(out.split())
    assert "fewer than 50 labeled examples -> few-shot prompting" in out
    assert "100" not in out.split("Estimate")[0]  # no reason or flip still says 100
    rules = rung("rules")
    assert "$min_labeled_examples        50" in rules.stdout and f"Rules from {lowered}" in rules.stdout


def test_plan_md_follows_the_threshold(rung, tmp_path, lowered):
    rung("plan", "--answers", write_answers(tmp_path, FEW), "--out", tmp_path / "chosen")
    md = (tmp_path / "chosen" / "PLAN.md").read_text()
    assert rungs_considered(md)["fine_tuning"] == "**chosen**"
    assert "| train | `data/train.jsonl` |" in md and "at least 50 (input, ideal output) examples" in md

    rung("plan", "--answers", write_answers(tmp_path, {**FEW, "labeled_examples": 40}), "--out", tmp_path / "few")
    plan_md = (tmp_path / "few" / "PLAN.md").read_text()
    assert rungs_considered(plan_md)["fine_tuning"] == "needs 50+ labelled examples (you have 40)"
    plan = yaml.safe_load((tmp_path / "few" / "plan.yaml").read_text())
    collect = next(step for step in plan["steps"] if step["id"] == "collect_examples")
    assert "40 on hand, 50 needed before fine-tuning" in collect["description"]
    assert collect["settings"]["done_when"] == "data/train.jsonl holds 50+ examples"


# goal, prompting result, a checker (default no), labelled examples, preference pairs; then GPU memory, count,
# budget, base model, size, keep
ASK_INPUT = "style\ninconsistent\n\n60\n0\n24\n1\n\n\n7\ny\n"


def test_questionnaire_follows_the_threshold(rung, tmp_path, monkeypatch, lowered):
    result = rung("ask", "--out", tmp_path / "a.yaml", "--no-probe", input=ASK_INPUT)
    assert result.exit_code == 0, result.output
    assert "How much memory does each of your GPUs" in result.output
    assert "Recommendation: fine_tuning (method sft, adapter lora)" in result.output
    saved = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert saved["gpu_memory_gb"] == 24 and saved["base_model_params_b"] == 7

    monkeypatch.delenv(RULES_ENV)  # the shipped 100: 60 examples cannot end on training, so no GPU questions
    result = rung("ask", "--out", tmp_path / "b.yaml", "--no-probe", input=ASK_INPUT)
    assert result.exit_code == 0, result.output
    assert "GPUs" not in result.output and "Recommendation: prompting" in result.output
    assert "gpu_memory_gb" not in yaml.safe_load((tmp_path / "b.yaml").read_text())


def test_gating_asks_the_route_rules(monkeypatch):
    from rung.advisor.questionnaire import QUESTIONS, may_train
    from rung.advisor.rules import advise
    from rung.advisor.answers import validate_answers

    monkeypatch.delenv(RULES_ENV, raising=False)
    # unknown facts keep a training route possible; known ones decide
    assert may_train({"goal": "preferences"})
    assert may_train({"goal": "preferences", "preference_pairs": 199})  # a checker (not asked yet) would train
    assert not may_train({"goal": "preferences", "preference_pairs": 199, "automatic_checker": False})
    assert may_train({"goal": "shorten_prompt", "prompt_tokens": 1000, "requests_per_day": 10_000})
    assert not may_train({"goal": "facts"})
    # whenever the questionnaire skips the GPU questions, the advice is not a training route, and vice versa
    gpu_question = next(when for key, _, when in QUESTIONS if key == "gpu_memory_gb")
    for goal in ("style", "preferences", "domain_language", "shorten_prompt", "new_capability"):
        for count in (0, 60, 100, 250, 60_000_000):
            answers, _ = validate_answers({"goal": goal, "prompting_result": "inconsistent", "labeled_examples": count,
                                           "preference_pairs": count, "domain_corpus_tokens": count,
                                           "prompt_tokens": count, "requests_per_day": 1})
            so_far = {k: answers[k] for k in ("goal", "prompting_result", "automatic_checker", "knowledge_changes",
                                              "private_data",
                                              "domain_corpus_tokens", "labeled_examples", "preference_pairs",
                                              "prompt_tokens", "requests_per_day")}
            training = advise(answers)["route"] in ("fine_tuning", "continued_pretraining")
            assert gpu_question(so_far) == training, (goal, count)


def test_rung_rules_env_to_a_missing_file(rung, tmp_path, monkeypatch):
    monkeypatch.setenv(RULES_ENV, str(tmp_path / "nope.yaml"))
    result = rung("advise", "--answers", write_answers(tmp_path, {"goal": "facts"}))
    assert result.exit_code == 2
    assert f"{RULES_ENV}={tmp_path / 'nope.yaml'}: no such rules file; unset {RULES_ENV}" in result.stderr


def test_threshold_problems_are_reported_at_once():
    data = yaml.safe_load(RULES_FILE.read_text())
    data["threshold"] = {}
    data["thresholds"]["min_cpt_tokens"] = "50M"
    data["thresholds"]["labeled_examples"] = 3            # a fact's name
    del data["thresholds"]["min_preference_pairs"]        # the plan reads it
    rule = next(rule for rule in data["rules"] if rule["id"] == "preferences-sft-dpo")
    rule["when"]["labeled_examples"] = {"gte": "$min_labled_examples"}
    rule["because"] += " {min_labled_examples}"
    text = "\n".join(validate_rulebook(data, where="r.yaml"))
    for expected in ['r.yaml: unknown key "threshold" (did you mean "thresholds"?)',
                     "thresholds.min_cpt_tokens: expected a number >= 0, got '50M'",
                     'thresholds.labeled_examples: "labeled_examples" is a fact',
                     'thresholds: missing "min_preference_pairs"',
                     'when.labeled_examples: unknown threshold "$min_labled_examples" '
                     '(did you mean "$min_labeled_examples"?)',
                     'because: unknown fact or threshold {min_labled_examples} (did you mean "min_labeled_examples"?)',
                     'when.preference_pairs: unknown threshold "$min_preference_pairs"']:
        assert expected in text, expected
    assert "a bare list of rules is the old format" in validate_rulebook(data["rules"])[0]


def test_threshold_text():
    assert [threshold_text(v) for v in (50_000_000, 2_500_000, 10_000, 1_234_567, 3 * 10**12, 0.5)] == \
        ["50M", "2.5M", "10,000", "1,234,567", "3T", "0.5"]


# Literals in advisor/*.py that equal a threshold but mean something else: (file, text on the line, why).
NOT_THRESHOLDS = [
    ("render.py", "width: int = 100", "the text wrap width"),
    ("render.py", "value < 100", "money: cents are shown below $100"),
    ("render.py", "cents below $100", "money: cents are shown below $100"),
    ("render.py", "if value >= 100:", "gpu_hours_text: whole hours from 100 GPU-hours up"),
    ("plan_md.py", "50-200 held-out examples", "the size of an eval set, not a rule threshold"),
    ("estimate_math.py", "(examples: 2000, 50M, 1.5B, 14.8T)", "how to type a count"),
    ("questionnaire.py", "(examples: 0, 2000, 50M, 1.5B)", "how to type a count"),
    ("planner.py", "beta=0.1", "DPO's beta, not the evidence_fails_below score"),
]


def threshold_literals(path: Path, values: set) -> list[tuple[int, str, str]]:
    """(line, literal, source line) for every number equal to a threshold and every string or comment that
    writes one (100, 10,000, 50M, 50000000, 50_000_000)."""
    forms = sorted({form for v in values for form in (threshold_text(v), f"{v:,}", str(v), f"{v:_}")},
                   key=len, reverse=True)
    written = re.compile(r"(?<![\w.,])(" + "|".join(map(re.escape, forms)) + r")(?!\d|[,.]\d|\w)")
    found = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if token.type == tokenize.NUMBER and ast.literal_eval(token.string) in values:
            found.append((token.start[0], token.string, token.line))
        elif token.type in (tokenize.STRING, tokenize.COMMENT) or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            found += [(token.start[0], m.group(0), token.line) for m in written.finditer(token.string)]
    return found


def test_no_threshold_is_a_literal_in_the_advisor():
    values = set(load_rulebook(RULES_FILE).thresholds.values())
    files = sorted(ADVISOR.glob("*.py"))
    assert {"rules.py", "rulebook.py", "planner.py", "plan_md.py", "questionnaire.py", "estimator.py"} <= \
        {f.name for f in files}
    problems, used = [], set()
    for path in files:
        for line, literal, source in threshold_literals(path, values):
            allowed = [entry for entry in NOT_THRESHOLDS if entry[0] == path.name and entry[1] in source]
            used.update(allowed)
            if not allowed:
                problems.append(f"advisor/{path.name}:{line}: {literal}: {source.strip()}")
    assert not problems, "thresholds belong in advisor/rules.yaml:\n" + "\n".join(problems)
    assert used == set(NOT_THRESHOLDS), f"stale entries: {set(NOT_THRESHOLDS) - used}"
