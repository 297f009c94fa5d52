"""The prompting engine: prompts built with LangChain templates, saved to paste anywhere; adherence scored."""

from __future__ import annotations

import json

import pytest

from rung.core.errors import RungError
from rung.engines import prompting
from rung.core.protocol import StepContext

SCHEMA = {"type": "object", "properties": {"sql": {"type": "string"}, "tables": {"type": "array"}},
          "required": ["sql"], "additionalProperties": False}


# Reading rows (every shape, system messages kept, bad rows all at once): tests/core/test_rows.py


def test_prompts_are_langchain_templates_saved_as_plain_files(tmp_path):
    from langchain_core.prompts import ChatPromptTemplate

    shots = [{"input": "Total of order {7}?", "output": '{"sql": "SELECT total FROM orders WHERE id = 7;"}'},
             {"input": "All customers?", "output": '{"sql": "SELECT * FROM customers;"}'}]
    system = prompting.build_system_prompt({"name": "sql-json"}, shots, SCHEMA)
    assert "valid against this JSON Schema" in system and '"required": ["sql"]' in system
    prompt = prompting.build_prompt(system, shots)
    assert isinstance(prompt, ChatPromptTemplate) and prompt.input_variables == ["input"]
    chat = prompting.to_chat(prompt, "Orders from Rome?")
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat[1]["content"] == "Total of order {7}?", "braces in examples stay literal"
    assert chat[-1]["content"] == "Orders from Rome?"

    files = prompting.save_prompts(tmp_path, system, prompt)
    text = (tmp_path / "few_shot_prompt.txt").read_text()
    assert text.startswith("System: You are an assistant for: sql json.")
    assert "Human: All customers?\nAI: {\"sql\": \"SELECT * FROM customers;\"}\nHuman: {input}" in text
    saved = json.loads((tmp_path / "few_shot_prompt.json").read_text())
    assert saved["messages"][-1] == {"role": "user", "content": "{input}"}
    assert (tmp_path / "system_prompt.txt").read_text().strip() == system
    assert set(files) == {"system_prompt", "few_shot_prompt", "few_shot_prompt_json"}


def test_scores_exact_match_json_validity_and_schema():
    expected = ['{"sql": "SELECT 1;"}', '{"sql": "SELECT 2;"}', '{"sql": "SELECT 3;"}', '{"sql": "SELECT 4;"}']
    outputs = ['{"sql": "SELECT 1;"}',                 # exact
               '```json\n{"sql":"SELECT 2;"}\n```',    # same JSON in a fence: valid, matching, not exact
               '{"sql": "SELECT 9;", "why": "x"}',     # valid JSON, wrong value, breaks the schema
               "Sure! SELECT 4;"]                     # not JSON
    metrics = prompting.score(outputs, expected, json_goal=True, schema=SCHEMA)
    assert metrics == {"exact_match": 0.25, "json_valid": 0.75, "json_match": 0.5, "schema_valid": 0.5}
    assert prompting.headline_metric(metrics) == "schema_valid"
    assert prompting.score(["a ", "b"], ["a", "c"]) == {"exact_match": 0.5, "token_f1": 0.5}
    from rung.engines.metrics import token_f1  # the one token F1, shared with probe and gate

    assert token_f1("Thanks for asking!", "thanks for waiting") == pytest.approx(2 / 3)


def test_an_invalid_schema_is_refused(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text('{"type": "objekt"}')
    with pytest.raises(RungError, match="not a valid JSON Schema"):
        prompting.load_schema(path)


@pytest.mark.slow
def test_engine_runs_the_prompt_on_a_model_and_reports_adherence(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"input": f"Total of order {i}?", "output": json.dumps({"sql": f"SELECT total FROM orders WHERE id = {i};"})}
            for i in range(6)]
    (data / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    (data / "schema.json").write_text(json.dumps(SCHEMA))
    plan = {"name": "sql-json", "goal": "schema", "base_model": "builtin:tiny",
            "data": {"examples": "data/examples.jsonl", "eval": "data/eval.jsonl", "schema": "data/schema.json"}}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=run_dir)
    result = prompting.run_step({"id": "prompting", "settings": {"max_new_tokens": 12, "num_examples": 2}}, ctx)
    for key in ("zero_shot", "few_shot"):
        for metric in ("exact_match", "json_valid", "json_match", "schema_valid"):
            assert 0.0 <= result.metrics[f"{key}/{metric}"] <= 1.0
    assert result.metrics["eval_examples"] == 3 and result.metrics["few_shot_examples"] == 2
    records = [json.loads(line) for line in (run_dir / "eval_outputs.jsonl").read_text().splitlines()]
    assert [r["expected"] for r in records] == [r["output"] for r in rows[3:]]
    assert all(isinstance(r["few_shot"], str) and isinstance(r["zero_shot"], str) for r in records)
    assert "| input | expected | zero_shot | few_shot |" in (run_dir / "samples.md").read_text()
    assert "**Verdict:** schema_valid" in result.summary  # a random toy model cannot meet a 90% target
    # below target: the report names the next rung and the exact command that re-plans from the evidence
    assert "the next rung is **" in result.summary and "Re-plan from this evidence" in result.summary
    assert f"rung plan --answers {run_dir / 'answers.yaml'} --evidence {run_dir / 'evidence.yaml'}" in result.summary
    from rung.advisor.evidence import load_evidence

    evidence = load_evidence(run_dir / "evidence.yaml")
    assert set(evidence["rungs"]) == {"zero_shot", "few_shot"} and evidence["n"] == len(records)


def test_without_an_eval_set_it_writes_the_prompts_only(tmp_path):
    (tmp_path / "examples.jsonl").write_text('{"input": "hi", "output": "Thanks for writing!"}\n')
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = StepContext(plan={"name": "tone", "base_model": "builtin:tiny", "data": {"examples": "examples.jsonl"}},
                      plan_dir=tmp_path, run_dir=run_dir)
    result = prompting.run_step({"id": "p", "settings": {}}, ctx)
    assert sorted(p.name for p in run_dir.iterdir()) == ["few_shot_prompt.json", "few_shot_prompt.txt",
                                                         "system_prompt.txt"]
    assert "add an eval set (data.eval)" in result.summary


@pytest.mark.slow
def test_the_engine_scores_with_a_user_metric_beside_the_plan_and_keeps_the_system_message(tmp_path, monkeypatch):
    from rung.core.generation import LocalChat

    system = "Schema: orders(id, total)"
    rows = [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": f"Total of order {i}?"},
                          {"role": "assistant", "content": f"SELECT total FROM orders WHERE id = {i};"}]}
            for i in range(5)]
    (tmp_path / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))
    (tmp_path / "length.py").write_text("def short(prediction, reference, row):\n"
                                        "    return float(len(prediction) <= len(row['output']))\n")
    asked = []
    real_chat = LocalChat.chat
    monkeypatch.setattr(LocalChat, "chat", lambda self, c, **kw: asked.extend(c) or real_chat(self, c, **kw))
    plan = {"name": "sql", "goal": "domain_task", "base_model": "builtin:tiny",
            "data": {"examples": "examples.jsonl", "eval": "eval.jsonl"}}
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "run")
    ctx.run_dir.mkdir()
    result = prompting.run_step({"id": "prompting", "settings": {"max_new_tokens": 6, "num_examples": 2,
                                                                 "metric": "length.py:short"}}, ctx)
    assert 0 <= result.metrics["few_shot/short"] <= 1 and "**Verdict:** short" in result.summary
    assert (tmp_path / "run" / "system_prompt.txt").read_text().startswith(system + "\n\n")
    assert all(c[0]["role"] == "system" and c[0]["content"].startswith(system) for c in asked)
    from rung.advisor.evidence import load_evidence

    assert load_evidence(tmp_path / "run" / "evidence.yaml")["metric"] == f"{tmp_path.as_posix()}/length.py:short"
