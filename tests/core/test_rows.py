"""core/rows.py: one reader and one normaliser for task rows; the system message is kept, every bad row reported."""

from __future__ import annotations

import json

import pytest

from rung.core.errors import RungError
from rung.core.rows import conversation, load_task_rows, merge_system, normalise, read_task_rows, training_messages

SYS = {"role": "system", "content": "Schema: t(a, b)"}

# (row as in the file, expected (system, history, input, output))
SHAPES = [
    ({"input": "a", "output": "b"}, ("", [], "a", "b")),
    ({"system": "S", "input": "a", "output": "b"}, ("S", [], "a", "b")),
    ({"prompt": "c", "completion": "d"}, ("", [], "c", "d")),
    ({"question": "e", "answer": {"k": 1}}, ("", [], "e", '{"k": 1}')),
    ({"instruction": "Translate.", "input": "chat", "output": "cat"}, ("", [], "Translate.\n\nchat", "cat")),
    ({"instruction": "Name a colour.", "context": "", "response": "red"}, ("", [], "Name a colour.", "red")),
    ({"messages": [SYS, {"role": "user", "content": "f"}, {"role": "assistant", "content": "g"}]},
     ("Schema: t(a, b)", [], "f", "g")),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "par"}, {"type": "text", "text": "ts"}]},
                   {"role": "assistant", "content": "ok"}]}, ("", [], "parts", "ok")),
    ({"prompt": [SYS, {"role": "user", "content": "h"}], "completion": [{"role": "assistant", "content": "i"}]},
     ("Schema: t(a, b)", [], "h", "i")),
    ({"prompt": [SYS, {"role": "user", "content": "j"}], "chosen": [{"role": "assistant", "content": "k"}],
      "rejected": [{"role": "assistant", "content": "no"}]}, ("Schema: t(a, b)", [], "j", "k")),
    ({"prompt": "l", "chosen": "m", "rejected": "n"}, ("", [], "l", "m")),
    ({"input": {"messages": [SYS, {"role": "user", "content": "o"}]},
      "preferred_output": [{"role": "assistant", "content": "p"}],
      "non_preferred_output": [{"role": "assistant", "content": "q"}]}, ("Schema: t(a, b)", [], "o", "p")),
    # multi-turn: the last answer, the user turn before it, the earlier turns as history
    ({"messages": [SYS, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
                   {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]},
     ("Schema: t(a, b)", [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}], "u2", "a2")),
]


@pytest.mark.parametrize("item, expected", SHAPES, ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_every_accepted_shape_keeps_its_system_message(item, expected):
    record = normalise(item)
    assert (record["system"], record["history"], record["input"], record["output"]) == expected
    assert record["source"] is item


def test_the_conversation_is_the_training_chat_without_its_answer():
    row = normalise(SHAPES[-1][0])
    assert training_messages(row) == SHAPES[-1][0]["messages"]
    assert conversation(row) == SHAPES[-1][0]["messages"][:-1]
    assert conversation(normalise({"input": "a", "output": "b"})) == [{"role": "user", "content": "a"}]
    tool = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "call"},
                         {"role": "tool", "content": "42"}, {"role": "assistant", "content": "It is 42."}]}
    assert conversation(normalise(tool)) == tool["messages"][:-1]


def test_every_bad_row_is_reported_at_once_with_its_line_and_never_its_text(tmp_path):
    path = tmp_path / "rows.jsonl"
    secret = "PASSWORD-hunter2"
    path.write_text("\n".join([
        json.dumps({"input": "a", "output": "b"}),
        json.dumps({"text": secret}),                                       # 2: no accepted shape
        '{"input": "' + secret,                                             # 3: bad JSON
        "",
        json.dumps([secret]),                                               # 5: not an object
        json.dumps({"messages": [{"role": "user", "content": secret}]}),    # 6: no answer
    ]) + "\n")
    rows, problems = read_task_rows(path)
    assert [r["input"] for r in rows] == ["a"]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:{n}" for n in (3, 2, 5, 6)]
    assert "keys text" in problems[1] and "a JSON list" in problems[2]
    assert not any(secret in p for p in problems)
    with pytest.raises(RungError) as error:
        load_task_rows(path, "eval rows")
    assert error.value.message.count(str(path)) == 4


def test_json_arrays_get_line_numbers_and_an_empty_file_is_one_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"input": "a", "output": "b"},\n  {"nope": 1}\n]\n')
    rows, problems = read_task_rows(path)
    assert len(rows) == 1 and problems == [f"{path}:3: expected {{input, output}} (or prompt/completion, "
                                           "prompt/chosen, question/answer, instruction/response, chat messages), "
                                           "got keys nope"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(RungError, match="the file has no rows"):
        load_task_rows(empty)


@pytest.mark.parametrize("row_system, instructions, merged", [
    ("Schema: t(a)", "Answer tersely.", "Schema: t(a)\n\nAnswer tersely."),
    ("", "Answer tersely.", "Answer tersely."),
    ("Schema: t(a)", "", "Schema: t(a)"),
    ("Schema: t(a)", "Schema: t(a)\n\nAnswer tersely.", "Schema: t(a)\n\nAnswer tersely."),
])
def test_the_rows_system_message_comes_first_and_is_never_repeated(row_system, instructions, merged):
    assert merge_system(row_system, instructions) == merged
