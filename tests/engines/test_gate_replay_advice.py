"""A DON'T SHIP for forgetting prints the command that adds replay (engines/gate.py next_move)."""

from rung.engines.gate import DONT_SHIP, SHIP, next_move, replay_step

FORGOT = {"verdict": DONT_SHIP, "forgetting": {"checked": True, "warning": True, "ratio": 1.6}}


def test_forgetting_advice_names_the_replay_flags():
    line = next_move(FORGOT, "builtin:tiny")
    assert "--replay builtin --replay-ratio 0.1" in line and "LoRA" in line
    in_plan = next_move(FORGOT, "builtin:tiny", "sft")
    assert "rung run plan.yaml --set sft.replay=builtin --set sft.replay_ratio=0.1" in in_plan
    assert next_move({**FORGOT, "verdict": SHIP}, "builtin:tiny") == ""
    not_better = next_move({"verdict": DONT_SHIP, "forgetting": {"checked": True, "warning": False}}, "base")
    assert "replay" not in not_better and "ship the cheaper rung" in not_better


def test_the_replay_step_is_one_that_takes_replay():
    plan = {"steps": [{"id": "sft", "engine": "sft"}, {"id": "dpo", "engine": "dpo", "from_step": "sft"},
                      {"id": "gate", "engine": "gate", "from_step": "dpo"}]}
    assert replay_step(plan, "dpo") == "sft"   # DPO has no replay; its SFT step does
    grpo = {"steps": [{"id": "sft", "engine": "sft"}, {"id": "grpo", "engine": "grpo"}, {"id": "gate"}]}
    assert replay_step(grpo, "grpo") == "grpo"
    assert replay_step({"steps": [{"id": "dpo", "engine": "dpo"}]}, "dpo") is None
