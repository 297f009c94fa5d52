"""The cheap rung's prompts (engines/prompts.py, engines/probe.py prompt_plans), stated as guarantees: the system
prompt says the task, the goal, the typical answer length and the format the examples show; each row is asked with
its own system message first, then rung's instructions, the requested shots, then its own turns. No model runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rung.engines.prompts import (GENERIC_SYSTEM, best_instructions, build_prompt, build_system_prompt, prompted,
                                  row_chats, to_chat, wants_json)


def ex(i: int, output: str | None = None) -> dict:
    return {"input": f"question {i}", "output": output if output is not None else f"answer number {i}"}


# --------------------------------------------------------------------------------------- wants_json

def test_json_is_wanted_when_a_schema_is_given_even_without_rows():
    assert wants_json({}, [], {"type": "object"}) is True
    assert wants_json({}, [], {}) is True   # an empty schema is still a schema


def test_json_is_wanted_only_when_every_example_is_an_object_or_a_list():
    assert wants_json({}, [ex(0, '{"a": 1}'), ex(1, "[1, 2]")], None) is True
    assert wants_json({}, [ex(0, '{"a": 1}'), ex(1, "SELECT 1")], None) is False
    assert wants_json({}, [ex(0, "3"), ex(1, '"text"')], None) is False  # JSON scalars are not a JSON format
    assert wants_json({"goal": "schema"}, [], None) is False  # a schema goal alone does not say JSON


# --------------------------------------------------------------------------------------- build_system_prompt

def test_the_system_prompt_names_the_task_and_the_goal():
    text = build_system_prompt({"name": "sql-helper_v2", "goal": "schema"}, [], None)
    assert text.split("\n") == ["You are an assistant for: sql helper v2. The aim: hit a strict output schema "
                                "every time.", "Answer every request in exactly the style and format of the examples."]


def test_without_a_name_or_a_known_goal_the_task_is_generic_and_no_aim_is_claimed():
    text = build_system_prompt({"goal": "nonsense"}, [], None)
    assert text.split("\n")[0] == "You are an assistant for: this task."
    assert "aim" not in text


def test_the_length_line_gives_the_median_and_the_range_of_the_examples():
    rows = [ex(0, "one"), ex(1, "one two three"), ex(2, "a b c d e f g"), ex(3, "w x y z")]
    text = build_system_prompt({}, rows, None)
    assert ("Keep answers about 3 words long (the examples run 1-7); no preamble, no explanation." in text)


def test_a_one_word_typical_answer_is_singular():
    text = build_system_prompt({}, [ex(0, "yes"), ex(1, "no")], None)
    assert "Keep answers about 1 word long (the examples run 1-1)" in text


def test_without_examples_no_length_is_claimed():
    assert "Keep answers" not in build_system_prompt({}, [], None)


def test_a_schema_is_quoted_in_the_prompt_as_json():
    text = build_system_prompt({}, [ex(0, "x")], {"type": "object", "title": "é"})
    lines = text.split("\n")
    assert lines[-2] == ("Reply with one JSON value only, no prose and no code fences, valid against this JSON "
                         "Schema:")
    assert lines[-1] == '{"type": "object", "title": "é"}'  # not ASCII-escaped


def test_json_examples_without_a_schema_ask_for_json_only():
    text = build_system_prompt({}, [ex(0, '{"a": 1}')], None)
    assert text.split("\n")[-1] == "Reply with one JSON value only, no prose and no code fences."
    assert "JSON" not in build_system_prompt({}, [ex(0, "plain")], None)


# --------------------------------------------------------------------------------------- templates and chats

def test_the_template_keeps_braces_in_the_system_text_and_orders_the_shots():
    prompt = build_prompt("Return {json} as {\"a\": 1}", [ex(0), ex(1)])
    chat = to_chat(prompt, "my {question}")
    assert chat == [{"role": "system", "content": 'Return {json} as {"a": 1}'},
                    {"role": "user", "content": "question 0"}, {"role": "assistant", "content": "answer number 0"},
                    {"role": "user", "content": "question 1"}, {"role": "assistant", "content": "answer number 1"},
                    {"role": "user", "content": "my {question}"}]


def test_without_shots_the_chat_is_the_system_message_and_the_input():
    assert to_chat(build_prompt("S", []), "hi") == [{"role": "system", "content": "S"},
                                                    {"role": "user", "content": "hi"}]


def test_each_row_gets_its_own_system_message_first_then_the_instructions_then_its_turns():
    rows = [{"input": "q1", "output": "a1", "system": "Schema: t(a)"},
            {"input": "q2", "output": "a2", "system": "Schema: u(b)",
             "history": [{"role": "user", "content": "before"}, {"role": "assistant", "content": "ok"}]},
            {"input": "q3", "output": "a3"}]
    chats = row_chats("Be brief.", [ex(0)], rows)
    assert chats[0] == [{"role": "system", "content": "Schema: t(a)\n\nBe brief."},
                        {"role": "user", "content": "question 0"},
                        {"role": "assistant", "content": "answer number 0"},
                        {"role": "user", "content": "q1"}]
    assert chats[1][0] == {"role": "system", "content": "Schema: u(b)\n\nBe brief."}
    assert chats[1][3:] == [{"role": "user", "content": "before"}, {"role": "assistant", "content": "ok"},
                            {"role": "user", "content": "q2"}]
    assert chats[2][0] == {"role": "system", "content": "Be brief."}
    assert chats[2][-1] == {"role": "user", "content": "q3"}


def test_rows_sharing_a_system_message_get_the_same_conversation_shape():
    rows = [{"input": f"q{i}", "output": "a", "system": "S"} for i in range(3)]
    chats = row_chats("I", [], rows)
    assert [c[-1]["content"] for c in chats] == ["q0", "q1", "q2"]
    assert all(c[0] == {"role": "system", "content": "S\n\nI"} and len(c) == 2 for c in chats)


# --------------------------------------------------------------------------------------- the cheap rung

def test_the_cheap_rungs_instructions_come_from_the_examples_or_are_generic():
    assert best_instructions("facts", []) == GENERIC_SYSTEM
    written = best_instructions("facts", [ex(0, "two words")])
    assert written == build_system_prompt({"goal": "facts", "name": "this task"}, [ex(0, "two words")], None)
    assert written.startswith("You are an assistant for: this task. The aim: give the model current")


@pytest.mark.parametrize("shots", [0, 1, 2])
def test_prompted_uses_the_first_shots_examples_in_order(shots):
    examples = [ex(i) for i in range(3)]
    chat = prompted("style", examples, shots, [{"input": "q", "output": "a"}])[0]
    assert chat[0] == {"role": "system", "content": best_instructions("style", examples)}
    assert [m["content"] for m in chat[1:-1]] == [t for e in examples[:shots] for t in (e["input"], e["output"])]
    assert chat[-1] == {"role": "user", "content": "q"}


def test_a_probe_plans_zero_shot_always_and_few_shot_only_with_examples(tmp_path):
    from rung.core.settings import ProbeSettings
    from rung.engines.probe import ProbeInputs, prompt_plans

    rows = [{"input": "q", "output": "a"}]
    examples = [ex(i) for i in range(3)]
    inputs = ProbeInputs(eval_path=Path("eval.jsonl"), out_dir=tmp_path, goal="style")
    plans = prompt_plans(ProbeSettings(model="builtin:tiny", num_examples=2), inputs, rows, examples)
    assert set(plans) == {"zero_shot", "few_shot"}
    assert plans["zero_shot"] == prompted("style", examples, 0, rows)
    assert plans["few_shot"] == prompted("style", examples, 2, rows)
    assert set(prompt_plans(ProbeSettings(model="builtin:tiny"), inputs, rows, [])) == {"zero_shot"}
    assert prompt_plans(ProbeSettings(model="builtin:tiny"), inputs, rows, [])["zero_shot"][0][0]["content"] == \
        GENERIC_SYSTEM
