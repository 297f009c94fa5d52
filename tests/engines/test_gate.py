"""`rung gate`: SHIP only a candidate significantly better than the baseline on the same rows; exit 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SQL = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data"


def test_bad_input_is_exit_2_before_any_model_loads(rung, tmp_path):
    result = rung("gate", "--baseline", "builtin:tiny", "--candidate", "builtin:tiny", "--eval", SQL / "eval.jsonl",
                  "--target", "2", "--metric", "exact", "--out", tmp_path / "gate")
    assert result.exit_code == 2
    assert "--target: must be a finite number above 0 and at most 1, got 2.0" in result.output
    assert 'unknown metric "exact"' in result.output
    assert not (tmp_path / "gate").exists()


@pytest.mark.slow
def test_identical_baseline_and_candidate_do_not_ship(rung, tmp_path):
    result = rung("gate", "--baseline", "builtin:tiny", "--candidate", "builtin:tiny", "--eval", SQL / "eval.jsonl",
                  "--max-rows", "6", "--max-new-tokens", "8", "--out", tmp_path / "gate", "--json")
    assert result.exit_code == 1, result.output
    verdict = json.loads(result.output)
    assert verdict["verdict"] == "DON'T SHIP" and verdict["difference"]["difference"] == 0
    assert "not significantly better" in verdict["reason"]
    assert (tmp_path / "gate" / "gate.md").read_text().startswith("# Gate: **DON'T SHIP**")


@pytest.mark.slow
def test_a_model_fine_tuned_on_the_task_ships_against_its_base(rung, tmp_path, sql_lora_run):
    result = rung("gate", "--baseline", "builtin:tiny", "--candidate", sql_lora_run, "--eval", SQL / "eval.jsonl",
                  "--examples", SQL / "train.jsonl", "--goal", "schema", "--max-rows", "20", "--max-new-tokens", "48",
                  "--out", tmp_path / "gate", "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["verdict"] == "SHIP" and verdict["metric"] == "token_f1"
    assert verdict["difference"]["ci_low"] > 0 and verdict["difference"]["significant"]
    assert verdict["forgetting"]["checked"] and not verdict["forgetting"]["warning"]
