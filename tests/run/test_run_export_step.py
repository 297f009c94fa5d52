"""An optional `export` step at the end of a training plan: the from_step model exported and checked by reloading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data"


def test_export_settings_are_checked_before_any_step_runs(rung, tmp_path):
    plan = {"version": 1, "name": "x", "route": "fine_tuning", "method": "sft", "base_model": "builtin:tiny",
            "data": {"train": str(DATA / "train.jsonl")},
            "steps": [{"id": "sft", "engine": "sft", "settings": {"max_steps": 2}},
                      {"id": "export", "engine": "export", "from_step": "sft",
                       "settings": {"format": "gguf", "quant": "q3_k"}}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    result = rung("run", tmp_path / "plan.yaml", "--dry-run")
    assert result.exit_code == 2 and "quant" in result.output and "q3_k" in result.output
    assert not (tmp_path / "sft").exists()


@pytest.mark.slow
def test_a_plan_can_end_by_exporting_its_model(rung, tmp_path):
    plan = {"version": 1, "name": "x", "route": "fine_tuning", "method": "sft", "base_model": "builtin:tiny",
            "data": {"train": str(DATA / "train.jsonl"), "eval": str(DATA / "eval.jsonl")},
            "steps": [{"id": "sft", "engine": "sft",
                       "settings": {"max_steps": 3, "eval_steps": 3, "save_steps": 3, "learning_rate": 2e-3}},
                      {"id": "export", "engine": "export", "from_step": "sft",
                       "settings": {"format": "gguf", "quant": "f16"}}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    result = rung("run", tmp_path / "plan.yaml")
    assert result.exit_code == 0, result.output
    state = json.loads((tmp_path / "run_state.json").read_text())
    export = state["steps"]["export"]
    assert export["status"] == "done" and export["metrics"]["passed"] is True
    assert (tmp_path / "export" / "model" / "model-f16.gguf").exists()
    report = (tmp_path / "report.md").read_text()
    assert "[model-f16.gguf](model/model-f16.gguf)" in report and "export_report.md" in report
