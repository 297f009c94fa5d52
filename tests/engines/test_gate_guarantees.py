"""The gate's verdict (engines/gate.py decide), stated as guarantees: SHIP only a candidate that is significantly
better on the task and did not trip the forgetting check; every DON'T SHIP says which of the three reasons it is."""

from __future__ import annotations

import pytest

from rung.engines.gate import DONT_SHIP, SHIP, decide


def diff(difference: float, significant: bool, *, low: float = -0.1, high: float = 0.1) -> dict:
    return {"difference": difference, "ci_low": low, "ci_high": high, "p_value": 0.01 if significant else 0.4,
            "test": "mcnemar_exact", "n": 40, "significant": significant}


CHECKED = {"checked": True, "baseline_ppl": 10.0, "candidate_ppl": 11.0, "ratio": 1.1, "warn_ratio": 1.2,
           "warning": False}
FORGOT = {**CHECKED, "candidate_ppl": 15.0, "ratio": 1.5, "warning": True}
NOT_CHECKED = {"checked": False, "why_not": "an endpoint model: perplexity needs the weights"}


def test_a_significantly_better_candidate_that_did_not_forget_ships():
    verdict, reason = decide(diff(0.3, True, low=0.1, high=0.5), CHECKED, 1.2)
    assert verdict == SHIP
    assert reason == "the candidate is better by +0.300 (95% CI [+0.100, +0.500], p = 0.01, mcnemar_exact)"


def test_an_endpoint_candidate_ships_and_says_forgetting_was_not_checked():
    verdict, reason = decide(diff(0.3, True, low=0.1, high=0.5), NOT_CHECKED, 1.2)
    assert verdict == SHIP
    assert reason.endswith("; forgetting not checked (endpoint model)")


def test_forgetting_stops_a_better_candidate_and_says_so():
    verdict, reason = decide(diff(0.3, True, low=0.1, high=0.5), FORGOT, 1.2)
    assert verdict == DONT_SHIP
    assert reason == ("forgetting: general-text perplexity rose 1.50x (warning past 1.20x) although the task score "
                      "improved")


@pytest.mark.parametrize("difference", [0.3, 0.0, -0.3])
def test_a_difference_that_is_not_significant_never_ships_whatever_its_sign(difference):
    verdict, reason = decide(diff(difference, False), CHECKED, 1.2)
    assert verdict == DONT_SHIP
    assert reason.startswith("the candidate is not significantly better: difference ")
    assert "p = 0.4 (mcnemar_exact)" in reason


def test_a_significant_loss_is_called_significantly_worse():
    verdict, reason = decide(diff(-0.3, True, low=-0.5, high=-0.1), CHECKED, 1.2)
    assert verdict == DONT_SHIP
    assert reason == ("the candidate is significantly worse: difference -0.300, 95% CI [-0.500, -0.100], "
                      "p = 0.01 (mcnemar_exact)")


def test_a_zero_difference_is_neither_better_nor_worse_even_when_flagged_significant():
    verdict, reason = decide(diff(0.0, True), CHECKED, 1.2)
    assert verdict == DONT_SHIP
    assert "not significantly better" in reason


def test_a_worse_candidate_that_also_forgot_is_refused_for_its_score():
    verdict, reason = decide(diff(-0.3, True, low=-0.5, high=-0.1), FORGOT, 1.2)
    assert verdict == DONT_SHIP and "significantly worse" in reason and "forgetting" not in reason


def test_no_forgetting_key_at_all_is_no_warning():
    verdict, _ = decide(diff(0.3, True, low=0.1, high=0.5), {"checked": True}, 1.2)
    assert verdict == SHIP


# --------------------------------------------------------------------------------------- what a DON'T SHIP asks

def test_forgetting_advice_says_retrain_with_replay_and_gate_again():
    from rung.engines.gate import next_move

    line = next_move({"verdict": DONT_SHIP, "forgetting": FORGOT}, "base", "sft")
    assert line.startswith(" — the candidate won on the task but forgot general text: retrain with replay, ")
    assert line.endswith("leaves the base weights alone), a lower learning rate or fewer steps, and gate again.")


def test_the_replay_step_is_the_gated_step_or_the_last_training_step_before_it_never_one_after():
    from rung.engines.gate import replay_step

    plan = {"steps": [{"id": "corpus", "engine": "cpt"}, {"id": "pref", "engine": "dpo", "from_step": "corpus"},
                      {"id": "late", "engine": "sft"}]}
    assert replay_step(plan, "corpus") == "corpus"   # continued pretraining takes replay
    assert replay_step(plan, "pref") == "corpus"     # not "late": it comes after the gated step
    assert replay_step(plan, "unknown") == "late"    # a source the plan does not name: the last training step
    assert replay_step(plan, None) == "late"
    assert replay_step({}, "x") is None
