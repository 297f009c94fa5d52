"""`rung plan --metric FILE.py:NAME`: the steps that score answers (prompting, gate) get the user's metric, its
file written relative to the plan's folder, where `rung run` resolves it."""

from __future__ import annotations

import pytest
import yaml

from rung.core.user_metric import resolve_spec


@pytest.mark.parametrize("answers, scoring", [
    ("goal: schema\nprompting_result: inconsistent\nlabeled_examples: 500\n", ["gate"]),
    ("goal: style\nprompting_result: untried\nlabeled_examples: 20\n", ["prompting"]),
])
def test_the_scoring_steps_get_the_metric_relative_to_the_plan(rung, tmp_path, answers, scoring):
    (tmp_path / "answers.yaml").write_text(answers)
    (tmp_path / "mine.py").write_text("def f(prediction, reference, row):\n    return 1.0\n")
    out = tmp_path / "plans" / "p"
    result = rung("plan", "--answers", tmp_path / "answers.yaml", "--out", out, "--metric", f"{tmp_path / 'mine.py'}:f")
    assert result.exit_code == 0, result.output
    steps = yaml.safe_load((out / "plan.yaml").read_text())["steps"]
    with_metric = {s["id"]: s["settings"]["metric"] for s in steps if "metric" in (s.get("settings") or {})}
    assert sorted(with_metric) == scoring and set(with_metric.values()) == {"../../mine.py:f"}
    assert resolve_spec("../../mine.py:f", out) == f"{out.as_posix()}/../../mine.py:f"


def test_a_plan_without_a_scoring_step_refuses_the_metric(rung, tmp_path):
    (tmp_path / "answers.yaml").write_text("goal: facts\nknowledge_changes: often\n")
    (tmp_path / "mine.py").write_text("def f(prediction, reference, row):\n    return 1.0\n")
    result = rung("plan", "--answers", tmp_path / "answers.yaml", "--out", tmp_path / "p", "--metric",
                  f"{tmp_path / 'mine.py'}:f")
    assert result.exit_code == 2 and "no step that scores answers" in result.output
    assert not (tmp_path / "p").exists()
