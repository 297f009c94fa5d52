"""The rule evaluator and the advisor's stages (advisor/rules.py), stated as guarantees on small rule books made
here, so each guarantee is checked on its own: a test against a fact, which rules of a stage fire, the what-if walk,
the derived facts, and what the evidence, route and budget stages decide."""

from __future__ import annotations

import pytest

from rung.advisor import estimator
from rung.advisor import rules as rules_module
from rung.advisor.rulebook import RuleBook, resolve
from rung.advisor.rules import (_budget_stage, _evidence_stage, _route_stage, advise, answer_facts, could_pick,
                                could_turn_on, evaluate)
from rung.advisor.rules import test_holds as holds
from rung.core.errors import RungError


def rule(id: str, stage: str, when: dict, **recommend) -> dict:
    return {"id": id, "stage": stage, "when": when, "recommend": recommend, "because": f"because {id}"}


def book(*rules: dict, **thresholds) -> RuleBook:
    return RuleBook(thresholds, list(rules), "test-rules.yaml")


# --------------------------------------------------------------------------------------- a test against a fact

def test_a_comparison_that_cannot_be_made_does_not_hold():
    assert holds({"gte": 5}, "text", {}) is False     # str >= int raises TypeError: the test fails
    assert holds({"gte": 5}, None, {}) is False


def test_thresholds_are_resolved_in_every_kind_of_test():
    t = {"many": 100}
    assert holds({"gte": "$many"}, 100, t) and not holds({"gt": "$many"}, 100, t)
    assert holds("$many", 100, t) and not holds("$many", 99, t)
    assert holds(["$many", 3], 100, t) and holds(["$many", 3], 3, t) and not holds(["$many"], 4, t)
    assert resolve(["$many", ["$many"], "x"], t) == [100, [100], "x"]


# --------------------------------------------------------------------------------------- stages

def test_a_deciding_stage_takes_the_first_match_and_notes_take_every_match():
    b = book(rule("r1", "route", {}, route="prompting"), rule("r2", "route", {}, route="rag"),
             rule("r3", "route", {}, route="fine_tuning"), rule("n1", "note", {}), rule("n2", "note", {}),
             rule("n3", "note", {"goal": "x"}))
    assert [r["id"] for r in evaluate(b, {}, "route")] == ["r1"]
    assert [r["id"] for r in evaluate(b, {}, "note")] == ["n1", "n2"]
    assert [r["id"] for r in evaluate(b, {"goal": "x"}, "note")] == ["n1", "n2", "n3"]
    assert evaluate(b, {}, "budget") == []


# --------------------------------------------------------------------------------------- what-if

WALK = book(rule("a", "route", {"goal": "style", "labeled_examples": {"gte": 10}}, route="fine_tuning"),
            rule("b", "route", {"goal": "style"}, route="prompting"),
            rule("c", "route", {"goal": "facts"}, route="rag"))


def test_could_pick_is_false_when_no_route_rule_can_fire():
    assert could_pick(WALK, {"goal": "other"}, ("fine_tuning", "prompting", "rag")) is False


def test_could_pick_stops_at_a_rule_that_certainly_fires():
    assert could_pick(WALK, {"goal": "style"}, ("fine_tuning",)) is True       # rule a may still fire
    assert could_pick(WALK, {"goal": "style", "labeled_examples": 5}, ("fine_tuning",)) is False
    assert could_pick(WALK, {"goal": "style", "labeled_examples": 5}, ("rag",)) is False  # b fires first
    assert could_pick(WALK, {}, ("rag",)) is True


def test_could_turn_on_is_true_only_for_an_unknown_fact_a_live_rule_tests():
    assert could_turn_on(WALK, {"goal": "style"}, "labeled_examples") is True
    assert could_turn_on(WALK, {"goal": "style", "labeled_examples": 50}, "labeled_examples") is False  # known
    assert could_turn_on(WALK, {"goal": "facts"}, "labeled_examples") is False  # no live rule tests it
    assert could_turn_on(WALK, {"goal": "other"}, "labeled_examples") is False  # nothing can fire
    assert could_turn_on(WALK, {"goal": "other"}, "goal") is False
    later = book(rule("x", "route", {"goal": "style", "budget_usd": {"lt": 5}}, route="prompting"),
                 rule("y", "route", {"goal": "style", "labeled_examples": {"gte": 1}}, route="fine_tuning"))
    assert could_turn_on(later, {"goal": "style"}, "labeled_examples") is True  # past a rule that may not fire


# --------------------------------------------------------------------------------------- derived facts

def test_derived_facts_need_all_their_answers():
    assert "prompt_tokens_per_day" not in answer_facts({"prompt_tokens": 100})
    assert "prompt_tokens_per_day" not in answer_facts({"requests_per_day": 100})
    facts = answer_facts({"prompt_tokens": 2000, "requests_per_day": 600})
    assert facts["prompt_tokens_per_day"] == 1_200_000 and facts["prompt_tokens_per_day_text"] == "1.2M"
    assert answer_facts({"domain_corpus_tokens": 25e6})["domain_corpus_tokens_text"] == "25M"
    assert "domain_corpus_tokens_text" not in answer_facts({})
    assert answer_facts({"budget_usd": 50})["budget_text"]
    assert "has_gpu" not in answer_facts({"gpu_memory_gb": 24})


@pytest.mark.parametrize("memory, count, has_gpu", [(24, 1, True), (0.5, 1, True), (0, 1, False), (24, 0, False),
                                                      (0, 0, False)])
def test_a_gpu_needs_memory_and_a_count(memory, count, has_gpu):
    facts = answer_facts({"gpu_memory_gb": memory, "gpu_count": count})
    assert facts["has_gpu"] is has_gpu and facts["gpu_total_gb"] == memory * count


# --------------------------------------------------------------------------------------- the evidence stage

EVIDENCE = book(rule("ev", "evidence", {"evidence_best_prompt_meets_target": True}, prompting_result="good_enough"))
MEASURED = {"metric": "exact_match", "target": 0.8, "n": 40, "rungs": {"few_shot": {"score": 0.9}}}


def test_evidence_replaces_the_answered_prompting_result_and_says_which_it_replaced():
    facts, fired = {"evidence_best_prompt_meets_target": True, "prompting_result": "inconsistent"}, []
    answers, summary = _evidence_stage(EVIDENCE, facts, {"prompting_result": "inconsistent"}, MEASURED, fired)
    assert answers == {"prompting_result": "good_enough"} and facts["prompting_result"] == "good_enough"
    assert [r["id"] for r in fired] == ["ev"]
    assert summary["prompting_result"] == "good_enough" and summary["replaced_answer"] == "inconsistent"


def test_evidence_agreeing_with_the_answer_replaces_nothing():
    _, summary = _evidence_stage(EVIDENCE, {"evidence_best_prompt_meets_target": True},
                                 {"prompting_result": "good_enough"}, MEASURED, [])
    assert summary["replaced_answer"] is None


def test_evidence_no_rule_reads_decides_nothing():
    facts, fired = {"evidence_best_prompt_meets_target": False}, []
    answers, summary = _evidence_stage(EVIDENCE, facts, {"prompting_result": "inconsistent"}, MEASURED, fired)
    assert answers == {"prompting_result": "inconsistent"} and fired == [] and "prompting_result" not in facts
    assert summary["prompting_result"] is None and summary["replaced_answer"] is None


def test_without_evidence_the_stage_does_nothing():
    assert _evidence_stage(EVIDENCE, {}, {"prompting_result": "x"}, None, []) == ({"prompting_result": "x"}, None)


# --------------------------------------------------------------------------------------- the route stage

def test_the_route_decision_starts_empty_and_takes_the_rules_recommendation():
    b = book(rule("r", "route", {"goal": "style"}, route="fine_tuning", method="dpo", step_down=True))
    facts, fired = {"goal": "style"}, []
    decision = _route_stage(b, facts, {"goal": "style"}, fired)
    assert decision == {"route": "fine_tuning", "method": "dpo", "adapter": None, "collect": None,
                        "corpus_as_documents": False, "generate_pairs": False}
    assert (facts["route"], facts["method"]) == ("fine_tuning", "dpo") and [r["id"] for r in fired] == ["r"]


def test_a_route_only_rule_leaves_the_other_decisions_at_their_defaults():
    decision = _route_stage(book(rule("r", "route", {}, route="rag")), {}, {}, [])
    assert decision["method"] is None and decision["corpus_as_documents"] is False
    assert decision["generate_pairs"] is False and decision["collect"] is None


def test_no_matching_route_rule_names_the_goal_and_the_file():
    with pytest.raises(RungError) as error:
        _route_stage(book(rule("r", "route", {"goal": "style"}, route="rag")), {"goal": "facts"}, {"goal": "facts"}, [])
    assert error.value.message == "no route rule matched goal 'facts': test-rules.yaml is incomplete"


# --------------------------------------------------------------------------------------- the budget stage

STEP_DOWN = book(rule("down", "budget", {"over_budget": True}, route="prompting", step_down=True))


def scripted(monkeypatch, *estimates: dict):
    calls = []

    def route_estimate(answers, shape, decision):
        calls.append(dict(decision))
        return estimates[len(calls) - 1]

    monkeypatch.setattr(estimator, "route_estimate", route_estimate)
    return calls


def test_a_cost_over_the_budget_steps_down_and_is_estimated_again(monkeypatch):
    calls = scripted(monkeypatch, {"cost_usd": 120.0, "gpu": "a10g"}, {"cost_usd": 0.0})
    decision = {"route": "fine_tuning", "method": "sft", "adapter": "lora", "collect": None,
                "corpus_as_documents": False, "generate_pairs": True}
    facts, fired = {}, []
    estimate, down_from = _budget_stage(STEP_DOWN, facts, {"budget_usd": 100.0}, None, decision, fired)
    assert estimate == {"cost_usd": 0.0} and [r["id"] for r in fired] == ["down"]
    assert down_from == {"route": "fine_tuning", "method": "sft", "adapter": "lora", "cost_usd": 120.0,
                         "budget_usd": 100.0}
    assert decision == {"route": "prompting", "method": None, "adapter": None, "collect": "examples",
                        "corpus_as_documents": False, "generate_pairs": False}
    assert calls[1] == decision
    assert facts["route"] == "prompting" and facts["method"] is None and facts["adapter"] is None
    assert facts["route_cost_usd"] == 120.0 and facts["over_budget"] is True and facts["estimate_gpu"] == "a10g"


def test_stepping_down_from_another_route_collects_nothing(monkeypatch):
    scripted(monkeypatch, {"cost_usd": 500.0}, {"cost_usd": 1.0})
    decision = {"route": "continued_pretraining", "method": "cpt", "adapter": "full", "collect": "corpus",
                "generate_pairs": False}
    b = book(rule("down", "budget", {"over_budget": True}, route="rag", step_down=True))
    _budget_stage(b, {}, {"budget_usd": 10.0}, None, decision, [])
    assert decision["collect"] is None and decision["route"] == "rag" and "step_down" not in decision


def test_a_cost_equal_to_the_budget_is_within_it(monkeypatch):
    scripted(monkeypatch, {"cost_usd": 100.0, "gpu": "a10g"})
    facts, decision = {}, {"route": "fine_tuning", "method": "sft", "adapter": "lora"}
    estimate, down_from = _budget_stage(STEP_DOWN, facts, {"budget_usd": 100.0}, None, decision, [])
    assert facts["over_budget"] is False and down_from is None and decision["route"] == "fine_tuning"


def test_no_budget_is_never_over_and_a_missing_cost_or_gpu_reads_as_free_on_a_gpu(monkeypatch):
    scripted(monkeypatch, {"cost_usd": None, "gpu": None})
    facts = {}
    _budget_stage(STEP_DOWN, facts, {"budget_usd": None}, None, {"route": "prompting"}, [])
    assert facts["route_cost_usd"] == 0.0 and facts["estimate_gpu"] == "GPU" and facts["over_budget"] is False
    assert facts["route_cost_text"] == rules_module.money(0.0)


# --------------------------------------------------------------------------------------- advise

def answers(**more) -> dict:
    from rung.advisor.answers import validate_answers

    raw, problems = validate_answers({"goal": "domain_task", "prompting_result": "inconsistent",
                                      "labeled_examples": 2000, **more})
    assert not problems, problems
    return raw


def test_advise_uses_the_named_base_models_shape():
    result = advise(answers(base_model="acme/mystery-3b"))   # in no catalog: its size from its name
    assert result["model"]["params_b"] == pytest.approx(3.0)
    assert set(result["model"]) == {"params_b", "layers", "hidden", "vocab", "source", "like"}
    assert result["model"]["source"] == "name" and result["model"]["like"]
    assert result["model"]["layers"] > 0 and result["model"]["hidden"] > 0 and result["model"]["vocab"] > 0


def test_advise_warns_when_a_training_route_does_not_fit_the_gpu():
    result = advise(answers(base_model="Qwen/Qwen2.5-72B-Instruct", gpu_memory_gb=16, gpu_count=1))
    estimate = result["estimate"]
    assert result["route"] == "fine_tuning" and estimate["fits"] is False
    assert (f"The estimated {estimate['memory_gb']:.1f} GB per GPU does not fit 16 GB: "
            + "; or ".join(estimate["suggestions"])) in result["warnings"]


def test_the_fit_warning_offers_every_suggestion(monkeypatch):
    scripted(monkeypatch, {"fits": False, "memory_gb": 30.04, "suggestions": ["QLoRA: ~9 GB", "2 GPUs: ~15 GB"],
                           "cost_usd": 0.0, "gpu": "a10"})
    result = advise(answers(gpu_memory_gb=24, gpu_count=1))
    assert "The estimated 30.0 GB per GPU does not fit 24 GB: QLoRA: ~9 GB; or 2 GPUs: ~15 GB" in result["warnings"]


def test_a_rule_book_without_a_matching_route_rule_names_the_goal():
    with pytest.raises(RungError) as error:
        advise(answers(), book(rule("n", "note", {})))
    assert error.value.message == "no route rule matched goal 'domain_task': test-rules.yaml is incomplete"


def test_advise_does_not_warn_about_fit_when_the_route_fits():
    result = advise(answers(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", gpu_memory_gb=80, gpu_count=1))
    assert result["estimate"]["fits"] is True
    assert not any(w.startswith("The estimated ") for w in result["warnings"])


def test_advise_reads_the_memory_facts_of_the_route_and_method_it_chose(monkeypatch):
    seen = []
    real = estimator.memory_facts
    monkeypatch.setattr(estimator, "memory_facts", lambda shape, method, route, *a: seen.append((method, route))
                        or real(shape, method, route, *a))
    result = advise(answers())
    assert seen == [(result["stepped_down_from"] or result)["method"], (result["stepped_down_from"] or result)["route"]] \
        or seen == [(result["method"], result["route"])]
    assert seen[0][1] == "fine_tuning" and seen[0][0] is not None


def test_advise_loads_the_shipped_rules_unless_given_a_book():
    b = book(rule("only", "route", {}, route="prompting"))
    result = advise(answers(), b)
    assert result["route"] == "prompting" and [r["id"] for r in result["rules"]] == ["only"]
    assert advise(answers())["route"] == "fine_tuning"


def test_the_model_size_is_a_fact_rules_can_test():
    b = book(rule("small", "route", {"params_b": {"lt": 1}}, route="prompting"),
             rule("big", "route", {}, route="rag"))
    assert advise(answers(base_model="HuggingFaceTB/SmolLM2-135M-Instruct"), b)["route"] == "prompting"
    assert advise(answers(base_model="acme/mystery-3b"), b)["route"] == "rag"
