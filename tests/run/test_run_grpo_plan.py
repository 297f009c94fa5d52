"""A plan with a GRPO step, written by `rung plan` from answers with an automatic checker, runs offline with `rung run`
and ends in the gate, which scores with the metric GRPO was rewarded with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

SQL = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data"


def test_a_grpo_plan_runs_and_ends_in_the_gate(tmp_path, rung, tiny_model_dir):
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"goal": "domain_task", "prompting_result": "inconsistent",
                                       "automatic_checker": True, "labeled_examples": 30}))
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join((SQL / "train.jsonl").read_text().splitlines()[:30]) + "\n")
    planned = rung("plan", "--answers", answers, "--out", tmp_path / "plan", "--data", f"train={train}")
    assert planned.exit_code == 0, planned.output
    plan = yaml.safe_load((tmp_path / "plan" / "plan.yaml").read_text())
    assert plan["method"] == "grpo" and [s["engine"] for s in plan["steps"]] == ["grpo", "gate"]
    assert "Why GRPO, and what it costs" in (tmp_path / "plan" / "PLAN.md").read_text()

    result = rung("run", tmp_path / "plan" / "plan.yaml", "--set", "grpo.max_steps=2",
                  "--set", "grpo.max_completion_length=8", "--set", "gate.max_rows=3", "--set", "gate.max_new_tokens=8")
    assert result.exit_code in (0, 1), result.output  # the toy may not beat its base: the gate decides
    gate_json = next((tmp_path / "plan").rglob("gate.json"))
    verdict = json.loads(gate_json.read_text())
    grpo_metrics = json.loads(next((tmp_path / "plan").rglob("grpo/metrics.json")).read_text())
    assert grpo_metrics["pipeline"] == "grpo" and grpo_metrics["global_step"] == 2
    assert verdict["metric"] == grpo_metrics["metric"]     # the gate scores with the reward's metric
    assert verdict["verdict"] in ("SHIP", "DON'T SHIP") and verdict["n"] == 3  # the 10% GRPO held out
    assert (gate_json.parent.parent / "grpo" / "reward.png").exists()
