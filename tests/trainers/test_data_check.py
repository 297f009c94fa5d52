"""`rung data check` and trainers/data.py: problems with the right line numbers, every accepted shape,
normalisation to TRL's formats, token statistics, duplicates and the split. No training here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rung.trainers import data

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "SELECT 1;"}]}

PLANTED = [
    json.dumps(GOOD),                                                                     # 1 fine
    '{"messages": [{"role": "user", "content": "hi"}',                                    # 2 bad JSON
    json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                             {"role": "assistant", "content": "c"}]}),                   # 3 role order
    json.dumps({"messages": [{"role": "user", "content": "  "},
                             {"role": "assistant", "content": "x"}]}),                   # 4 empty content
    "",                                                                                   # 5 blank: skipped
    json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),           # 6 no assistant
    json.dumps({"msgs": []}),                                                             # 7 missing key
    json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                             {"role": "system", "content": "late"}]}),                   # 8 system not first
    json.dumps(GOOD),                                                                     # 9 duplicate of 1
    json.dumps({"messages": [{"role": "bot", "content": "q"}]}),                          # 10 unknown role
]


def _lines_with(problems: list[str], path: Path) -> dict[int, str]:
    found = {}
    for problem in problems:
        assert problem.startswith(f"{path}:"), problem
        line = int(problem[len(str(path)) + 1:].split(":")[0])
        found.setdefault(line, problem)
    return found


def test_planted_errors_are_reported_at_their_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(PLANTED) + "\n")
    report = data.check_file(path, "sft")
    found = _lines_with(report.problems, path)
    assert sorted(found) == [2, 3, 4, 6, 7, 8, 10]
    assert "bad JSON" in found[2]
    assert "two user turns in a row" in found[3]
    assert "empty user content" in found[4]
    assert "no assistant turn" in found[6]
    assert 'missing key "messages"' in found[7]
    assert "system message may only come first" in found[8]
    assert 'role "bot"' in found[10]
    assert [row.line for row in report.rows] == [1, 9]
    assert report.duplicates == [(9, 1)]


def test_json_array_files_get_line_numbers_too(tmp_path):
    path = tmp_path / "rows.json"
    rows = [GOOD, {"prompt": "p"}, GOOD]
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    report = data.check_file(path, "sft")
    assert _lines_with(report.problems, path).keys() == {3}
    assert 'missing key "completion"' in report.problems[0]
    bad = tmp_path / "broken.json"
    bad.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": "a" "completion": "b"}\n]')
    problems = data.check_file(bad, "sft").problems
    assert problems and problems[0].startswith(f"{bad}:3: bad JSON")


def test_preference_problems_and_every_shape_normalises_to_trl_formats(tmp_path):
    prompt = [{"role": "user", "content": "q"}]
    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b"},                                     # 1 text
        {"prompt": "q", "chosen": "same", "rejected": "same"},                               # 2 chosen == rejected
        {"prompt": "q", "chosen": "a"},                                                      # 3 missing rejected
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = data.check_file(path, "dpo")
    found = _lines_with(report.problems, path)
    assert sorted(found) == [2, 3]
    assert "chosen == rejected" in found[2] and 'missing key "rejected"' in found[3]
    assert report.examples == [{"prompt": "q", "chosen": "a", "rejected": "b"}]

    openai = {"input": {"messages": prompt}, "preferred_output": [{"role": "assistant", "content": "good"}],
              "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    conversational = {"prompt": prompt, "chosen": [{"role": "assistant", "content": "x"}],
                      "rejected": [{"role": "assistant", "content": "y"}]}
    path2 = tmp_path / "pairs2.jsonl"
    path2.write_text(json.dumps(openai) + "\n" + json.dumps(conversational) + "\n")
    report = data.check_file(path2)  # kind guessed from the keys
    assert report.kind == "dpo" and not report.problems
    assert report.examples[0] == {"prompt": prompt, "chosen": [{"role": "assistant", "content": "good"}],
                                  "rejected": [{"role": "assistant", "content": "bad"}]}
    assert report.shapes == {"openai_preference": 1, "preference": 1}

    # prompt/completion (text) and OpenAI content parts
    sft = tmp_path / "pc.jsonl"
    sft.write_text(json.dumps({"prompt": "2+2=", "completion": "4"}) + "\n")
    assert data.check_file(sft).examples == [{"prompt": "2+2=", "completion": "4"}]
    parts = tmp_path / "parts.jsonl"
    parts.write_text(json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                                              {"role": "assistant", "content": "yo"}]}) + "\n")
    assert data.check_file(parts).examples[0]["messages"][0] == {"role": "user", "content": "hi"}


def test_mixed_formats_in_one_file_are_a_problem(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    report = data.check_file(path, "sft")
    assert any("mix formats" in p and "line 2" in p for p in report.problems)


def test_split_is_deterministic_and_disjoint():
    rows = list(range(50))
    train, held = data.split_examples(rows, 0.1, seed=42)
    assert len(held) == 5 and sorted(train + held) == rows
    assert data.split_examples(rows, 0.1, seed=42) == (train, held)
    assert data.split_examples(rows[:9], 0.1, seed=42) == (rows[:9], [])


def test_cli_reports_stats_overlong_rows_and_exits_2_on_problems(rung, tmp_path):
    path = tmp_path / "bad.jsonl"
    long_answer = "SELECT " + ", ".join(f"column_{i}" for i in range(80)) + " FROM t;"
    rows = [GOOD, {"messages": [{"role": "user", "content": "long"}, {"role": "assistant", "content": long_answer}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"messages": oops}\n')
    result = rung("data", "check", path, "--max-length", "64")
    assert result.exit_code == 2
    assert f"{path}:3: bad JSON" in result.output
    assert "Tokens per example (builtin:tiny tokenizer, chat template): min 21" in result.output
    assert "Longer than max_length 64: 1 (lines 2)" in result.output
    assert "EOS are lost" in result.output


@pytest.mark.parametrize("name, kind, rows", [
    ("sql_assistant/data/train.jsonl", "sft", 240),
    ("sql_assistant/data/eval.jsonl", "sft", 30),
    ("preferences/data/train.jsonl", "sft", 160),
    ("preferences/data/pairs.jsonl", "dpo", 200),
])
def test_shipped_example_data_is_clean(name, kind, rows):
    report = data.check_file(EXAMPLES / name, kind)
    assert not report.problems and not report.duplicates
    assert len(report.rows) == rows


def test_shipped_example_data_is_what_the_scripts_write(tmp_path, monkeypatch):
    """The generator scripts are deterministic and the committed files are their output."""
    import runpy
    import shutil

    for example in ("sql_assistant", "preferences"):
        shutil.copytree(EXAMPLES / example, tmp_path / example, ignore=shutil.ignore_patterns("data"))
    runpy.run_path(str(tmp_path / "sql_assistant" / "make_data.py"), run_name="__main__")
    runpy.run_path(str(tmp_path / "preferences" / "make_data.py"), run_name="__main__")
    for name in ("sql_assistant/data/train.jsonl", "sql_assistant/data/eval.jsonl",
                 "preferences/data/train.jsonl", "preferences/data/pairs.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
