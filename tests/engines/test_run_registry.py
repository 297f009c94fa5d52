"""engines/registry.py is the one route/step -> engine table: it covers every engine and every plan the advisor writes."""

from __future__ import annotations

import dataclasses

import pytest

from rung.core.plan import DATA_ROLES, ENGINES, METHODS, ROUTES
from rung.engines import registry


def test_table_covers_exactly_the_plan_schemas_engines():
    assert set(registry.ENGINES) == set(ENGINES)
    assert set(registry.REQUIRED_DATA) == set(ENGINES)
    assert set(registry.ROUTE_ENGINES) == set(ROUTES)
    assert {e for engines in registry.ROUTE_ENGINES.values() for e in engines} <= set(ENGINES)
    assert {r for roles in registry.REQUIRED_DATA.values() for r in roles} <= set(DATA_ROLES)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_entry_imports_to_a_function_taking_step_and_ctx(engine):
    import inspect

    function = registry.engine_function(engine)
    assert callable(function)
    assert list(inspect.signature(function).parameters)[:2] == ["step", "ctx"]


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_has_a_settings_dataclass_with_help_on_every_field(engine):
    declared = registry.settings_class(engine)
    assert dataclasses.is_dataclass(declared)
    declared()  # every field has a default
    assert all(field.metadata.get("help") for field in dataclasses.fields(declared)), engine


def test_engine_modules_import_no_heavy_library_at_import_time():
    import subprocess
    import sys

    modules = sorted({target.split(":")[0] for target in registry.ENGINES.values()} | {"rung.run.prepare", "rung.run.execute", "rung.cli.run"})
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(sorted(m for m in ('torch', 'transformers', 'trl', 'langchain_core', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Answers that lead the advisor to every route and every fine-tuning method (rules in advisor/rules.yaml).
ANSWERS = {
    "prompting": {"goal": "style", "prompting_result": "untried"},
    "prompting+collect": {"goal": "style", "prompting_result": "inconsistent", "labeled_examples": 20},
    "rag": {"goal": "facts"},
    "sft": {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 500},
    "dpo": {"goal": "preferences", "preference_pairs": 500},
    "sft_then_dpo": {"goal": "preferences", "preference_pairs": 500, "labeled_examples": 500},
    "grpo": {"goal": "domain_task", "prompting_result": "inconsistent", "labeled_examples": 20,
             "automatic_checker": True},
    "sft_then_grpo": {"goal": "schema", "prompting_result": "inconsistent", "labeled_examples": 500,
                      "automatic_checker": True},
    "continued_pretraining": {"goal": "domain_language", "domain_corpus_tokens": 100_000_000, "labeled_examples": 500},
    "bigger_model": {"goal": "new_capability"},
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_every_plan_the_advisor_writes_names_registered_engines(case, tmp_path):
    from rung.advisor.answers import validate_answers
    from rung.advisor.planner import build_plan

    answers, problems = validate_answers(ANSWERS[case])
    assert problems == []
    plan, _, _ = build_plan(answers, tmp_path / case)
    engines = [step["engine"] for step in plan["steps"]]
    assert set(engines) <= set(registry.ROUTE_ENGINES[plan["route"]]), (case, engines)
    for step in plan["steps"]:
        declared = registry.settings_class(step["engine"])
        known = {f.name for f in dataclasses.fields(declared)}
        assert set(step.get("settings") or {}) <= known, (case, step)
    if plan["route"] == "fine_tuning":
        assert plan["method"] == case
        assert engines == {"sft": ["sft", "gate"], "dpo": ["dpo", "gate"], "sft_then_dpo": ["sft", "dpo", "gate"],
                           "grpo": ["grpo", "gate"], "sft_then_grpo": ["sft", "grpo", "gate"]}[case]


def test_the_cases_reach_every_route_and_method(tmp_path):
    from rung.advisor.answers import validate_answers
    from rung.advisor.planner import build_plan

    seen_routes, seen_methods = set(), set()
    for case, raw in ANSWERS.items():
        plan, _, _ = build_plan(validate_answers(raw)[0], tmp_path / case)
        seen_routes.add(plan["route"])
        seen_methods.add(plan["method"])
    assert seen_routes == set(ROUTES)
    assert set(METHODS) <= seen_methods
