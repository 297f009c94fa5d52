"""`rung plan`: plan.yaml loads through advisor.plan.load_plan, steps follow the route contract, PLAN.md reads well."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rung.core.plan import load_plan
from .advisor_cases import CASES
from rung.core.settings import SETTINGS_BY_ENGINE, field_names

PLAN_SECTIONS = ["## Goal", "## Recommendation", "## Rungs considered", "## Steps", "## Data checklist",
                 "## Cost, time and memory", "## Risks", "## How to evaluate", "## Run it"]


def make_plan(rung, tmp_path: Path, answers: dict, *extra, out: str = "plan"):
    answers_path = tmp_path / "answers.yaml"
    answers_path.write_text(yaml.safe_dump(answers))
    result = rung("plan", "--answers", answers_path, "--out", tmp_path / out, *extra)
    assert result.exit_code == 0, result.output
    plan = load_plan(tmp_path / out / "plan.yaml")
    return plan, (tmp_path / out / "PLAN.md").read_text(), result


def steps_of(plan):
    return [(s["id"], s["engine"], s.get("from_step")) for s in plan["steps"]]


def check_settings(plan):
    for step in plan["steps"]:
        cls = SETTINGS_BY_ENGINE.get(step["engine"])
        if cls:
            assert set(step["settings"]) <= set(field_names(cls)), step
            if "adapter" in field_names(cls):  # the training engines
                assert step["settings"]["adapter"] in ("lora", "qlora", "full")


@pytest.mark.parametrize("case_id, raw, route, method, adapter, rule_id", CASES, ids=[c[0] for c in CASES])
def test_every_case_writes_a_loadable_plan(rung, tmp_path, case_id, raw, route, method, adapter, rule_id):
    plan, md, _ = make_plan(rung, tmp_path, raw)
    assert (plan["route"], plan["method"], plan["adapter"]) == (route, method, adapter)
    assert rule_id in [r["id"] for r in plan["rules"]]
    check_settings(plan)
    for section in PLAN_SECTIONS:
        assert section in md, section
    assert f"rung run {(tmp_path / 'plan' / 'plan.yaml').as_posix()}" in md
    for rung_name in ("prompting", "rag", "fine_tuning", "continued_pretraining", "bigger_model"):
        assert f"| {rung_name} |" in md
    assert plan["answers"]["goal"] == raw["goal"] and plan["version"] == 1


def test_route_steps(rung, tmp_path):
    inconsistent = {"goal": "schema", "prompting_result": "inconsistent", "gpu_memory_gb": 80, "gpu_count": 1}
    cases = [
        ({"goal": "style"}, [("prompting", "prompting", None)]),
        ({**inconsistent, "labeled_examples": 10}, [("prompting", "prompting", None), ("collect_examples", "manual", None)]),
        ({"goal": "preferences", "preference_pairs": 10}, [("prompting", "prompting", None),
                                                           ("collect_preferences", "manual", None)]),
        ({"goal": "facts"}, [("index", "rag_index", None), ("write_eval_queries", "manual", None)]),
        ({**inconsistent, "labeled_examples": 500}, [("sft", "sft", None), ("gate", "gate", "sft")]),
        ({"goal": "preferences", "preference_pairs": 500, **{k: inconsistent[k] for k in ("gpu_memory_gb", "gpu_count")}},
         [("dpo", "dpo", None), ("gate", "gate", "dpo")]),
        ({**inconsistent, "labeled_examples": 500, "preference_pairs": 500}, [("sft", "sft", None), ("dpo", "dpo", "sft"),
                                                                             ("gate", "gate", "dpo")]),
        ({"goal": "domain_language", "domain_corpus_tokens": 60_000_000}, [("cpt", "cpt", None),
                                                                          ("collect_instructions", "manual", None)]),
        ({"goal": "domain_language", "domain_corpus_tokens": 60_000_000, "labeled_examples": 300},
         [("cpt", "cpt", None), ("sft", "sft", "cpt"), ("gate", "gate", "sft")]),
        ({"goal": "new_capability"}, [("bigger_model", "bigger_model", None)]),
        ({"goal": "shorten_prompt", "prompt_tokens": 4000, "requests_per_day": 5000},
         [("generate_pairs", "manual", None), ("sft", "sft", None), ("gate", "gate", "sft")]),
    ]
    for index, (answers, expected) in enumerate(cases):
        plan, _, _ = make_plan(rung, tmp_path, answers, out=f"p{index}")
        assert steps_of(plan) == expected, answers


def test_rag_eval_step_only_with_queries(rung, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("hello")
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "hi", "relevant": ["a.md"]}\n')
    plan, md, _ = make_plan(rung, tmp_path, {"goal": "facts"}, "--data", docs, "--data", f"queries={queries}")
    assert steps_of(plan) == [("index", "rag_index", None), ("eval", "rag_eval", None)]
    from rung.core.settings import RagIndexSettings, defaults  # the plan writes the RAG engine's own defaults

    assert plan["steps"][0]["settings"] == {k: defaults(RagIndexSettings)[k] for k in ("chunk_tokens", "overlap")}
    assert plan["data"] == {"documents": "../docs", "queries": "../queries.jsonl"}  # relative to the plan folder
    assert "**missing**" not in md


def test_domain_language_rag_indexes_the_corpus(rung, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    plan, _, _ = make_plan(rung, tmp_path, {"goal": "domain_language", "domain_corpus_tokens": 1_000_000},
                           "--data", f"corpus={corpus}")
    assert plan["route"] == "rag" and plan["data"]["documents"] == plan["data"]["corpus"] == "../corpus"


def test_bare_data_path_takes_the_main_role_and_missing_data_warns(rung, tmp_path):
    answers = {"goal": "preferences", "preference_pairs": 500, "gpu_memory_gb": 80, "gpu_count": 1}
    plan, md, _ = make_plan(rung, tmp_path, answers, "--data", tmp_path / "pairs.jsonl")
    assert plan["data"] == {"preferences": "../pairs.jsonl"}
    assert "**missing**" in md and "pairs.jsonl does not exist yet" in md


def test_data_errors(rung, tmp_path):
    answers_path = tmp_path / "answers.yaml"
    answers_path.write_text("goal: facts\n")
    result = rung("plan", "--answers", answers_path, "--out", tmp_path / "p", "--data", "docs=x", "--data", "queris=y")
    assert result.exit_code == 2
    assert 'unknown role "docs"' in result.stderr and 'did you mean "queries"' in result.stderr
    assert not (tmp_path / "p").exists()


def test_cpu_sizing_for_builtin_tiny(rung, tmp_path):
    answers = {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 300,
               "gpu_memory_gb": 80, "gpu_count": 1}
    plan, md, _ = make_plan(rung, tmp_path, answers, "--base-model", "builtin:tiny")
    assert plan["base_model"] == "builtin:tiny"
    assert plan["steps"][0]["settings"]["max_length"] == 256
    assert "CPU run" in md
    gpu_plan, gpu_md, _ = make_plan(rung, tmp_path, answers, "--base-model", "Qwen/Qwen2.5-7B-Instruct", out="gpu")
    settings = gpu_plan["steps"][0]["settings"]
    assert settings["max_length"] == 1024 and "CPU run" not in gpu_md
    assert settings["per_device_train_batch_size"] * settings["gradient_accumulation_steps"] == 16
    assert gpu_plan["estimate"]["params_b"] == 7.62  # advisor/catalog.yaml


def test_no_base_model_defaults_to_tiny_with_a_warning(rung, tmp_path):
    plan, md, result = make_plan(rung, tmp_path, {"goal": "style"})
    assert plan["base_model"] == "builtin:tiny"
    assert any("No base_model given" in w for w in plan["warnings"])
    assert "Wrote" in result.stdout


def _fill_data(plan_dir: Path, plan: dict) -> None:
    """Stand-in files at the plan's data paths, so a dry run checks structure and settings only."""
    for rel in plan["data"].values():
        path = plan_dir / rel
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('{"prompt": "a", "completion": "b", "chosen": "c", "rejected": "d"}\n')
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "a.txt").write_text("some text")


@pytest.mark.parametrize("case_id, raw, route, method, adapter, rule_id", CASES, ids=[c[0] for c in CASES])
def test_every_plan_passes_the_runner_dry_run(rung, tmp_path, case_id, raw, route, method, adapter, rule_id):
    """The contract with engines/: `rung run PLAN --dry-run` accepts every plan `rung plan` writes."""
    plan, _, _ = make_plan(rung, tmp_path, raw)
    _fill_data(tmp_path / "plan", plan)
    result = rung("run", tmp_path / "plan" / "plan.yaml", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Plan OK" in result.output
