"""Evidence read as facts (advisor/evidence.py), stated as guarantees: every fact the evidence rules test is there
with its value, each measured rung is cited, and the summary keeps what was measured and what it decided."""

from __future__ import annotations

from rung.advisor.evidence import _fraction, evidence_facts, summary

EVIDENCE = {"version": 1, "metric": "exact_match", "target": 0.8, "n": 40,
            "rungs": {"zero_shot": {"score": 0.3, "ci": [0.2, 0.4]}, "few_shot": {"score": 0.6},
                      "rag": {"score": 0.85, "ci": [0.7, 0.95]}, "lora_short": {"score": 0.7, "n": 40}}}


def test_every_fact_is_there_with_its_value():
    facts = evidence_facts(EVIDENCE)
    assert facts == {
        "evidence_target": 0.8, "evidence_n": 40, "evidence_metric": "exact_match",
        "evidence_best_prompt": 0.6, "evidence_best_prompt_meets_target": False,
        "evidence_rag": 0.85, "evidence_rag_meets_target": True,
        "evidence_text": ("few-shot scored 0.60, RAG scored 0.85 [0.70, 0.95], a short LoRA run scored 0.70 on 40 "
                          "held-out rows (exact_match); target 0.80"),
    }


def test_a_score_equal_to_the_target_meets_it():
    facts = evidence_facts({**EVIDENCE, "rungs": {"zero_shot": {"score": 0.8}, "rag": {"score": 0.8}}})
    assert facts["evidence_best_prompt_meets_target"] is True and facts["evidence_rag_meets_target"] is True


def test_without_a_rung_its_facts_are_absent():
    facts = evidence_facts({**EVIDENCE, "rungs": {"lora_short": {"score": 0.5}}})
    assert not {"evidence_best_prompt", "evidence_rag", "evidence_rag_meets_target"} & set(facts)
    assert facts["evidence_text"].startswith("a short LoRA run scored 0.50 on 40")
    assert evidence_facts(None) == {} and evidence_facts({}) == {}


def test_the_summary_keeps_each_scores_ci_and_what_it_decided():
    out = summary(EVIDENCE, "good_enough", "inconsistent")
    assert out == {"metric": "exact_match", "target": 0.8, "n": 40,
                   "scores": {"zero_shot": {"score": 0.3, "ci": [0.2, 0.4]}, "few_shot": {"score": 0.6},
                              "rag": {"score": 0.85, "ci": [0.7, 0.95]}, "lora_short": {"score": 0.7}},
                   "prompting_result": "good_enough", "replaced_answer": "inconsistent"}


def test_a_fraction_is_a_finite_number_from_0_to_1_inclusive():
    assert _fraction(0.0) and _fraction(1.0) and _fraction(1) and _fraction(0.5)
    assert not any(_fraction(v) for v in (-0.01, 1.01, float("nan"), float("inf"), True, "0.5", None))
