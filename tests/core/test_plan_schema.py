"""The plan schema (core/plan.py): structural validation reports every problem at once."""

from __future__ import annotations

import pytest

from rung.core.errors import RungError
from rung.core.plan import ENGINES, load_plan, validate_plan

GOOD = {
    "version": 1,
    "name": "sql",
    "route": "fine_tuning",
    "method": "sft_then_dpo",
    "adapter": "lora",
    "base_model": "builtin:tiny",
    "data": {"train": "data/train.jsonl", "preferences": "data/pairs.jsonl"},
    "steps": [
        {"id": "sft", "engine": "sft", "settings": {"num_train_epochs": 1}},
        {"id": "dpo", "engine": "dpo", "from_step": "sft"},
    ],
}


def test_a_good_plan_has_no_problems():
    assert validate_plan(GOOD) == []


def test_every_problem_is_reported_at_once():
    bad = dict(GOOD, rout="x", route="fine_tune", data={"trian": "x.jsonl"},
               steps=[{"id": "a", "engine": "sfft", "setings": {}}, {"id": "a", "engine": "dpo", "from_step": "zz"}])
    problems = validate_plan(bad, where="p.yaml")
    text = "\n".join(problems)
    assert 'unknown key "rout"' in text and 'did you mean "route"' in text
    assert 'route "fine_tune"' in text and 'did you mean "fine_tuning"' in text
    assert 'unknown role "trian"' in text and 'did you mean "train"' in text
    assert 'unknown engine "sfft"' in text and 'did you mean "sft"' in text
    assert 'unknown key "setings"' in text
    assert 'duplicate id "a"' in text
    assert 'from_step "zz" does not name an earlier step' in text
    assert len(problems) == 7
    assert all(p.startswith("p.yaml: ") for p in problems)


def test_missing_required_keys_and_version():
    problems = validate_plan({"version": 2, "name": "x"})
    assert any("version 2 is not supported" in p for p in problems)
    assert any('missing key "route"' in p for p in problems)
    assert any('missing key "steps"' in p for p in problems)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_name_is_accepted(engine):
    plan = dict(GOOD, steps=[{"id": "only", "engine": engine}])
    assert validate_plan(plan) == []


def test_load_plan_names_file_line_and_column_for_malformed_yaml(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("version: 1\nname: [unclosed\nroute: rag\n")
    with pytest.raises(RungError) as info:
        load_plan(path)
    assert str(path) in info.value.message
    assert ":3:" in info.value.message or ":2:" in info.value.message


def test_load_plan_missing_file(tmp_path):
    with pytest.raises(RungError, match="plan not found"):
        load_plan(tmp_path / "nope.yaml")
