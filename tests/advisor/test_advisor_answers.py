"""The answers file: every kind of bad input gets a clear message naming file, line and key; all at once; exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rung.advisor.answers import SCHEMA, load_answers, validate_answers
from rung.core.errors import RungError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RungError) as error:
        load_answers(write(tmp_path, text))
    return error.value.message.splitlines()


def test_defaults_fill_in(tmp_path):
    answers = load_answers(write(tmp_path, "goal: style\n"))
    assert answers["prompting_result"] == "untried" and answers["knowledge_changes"] == "rarely"
    assert answers["keep_general_skills"] is True and answers["budget_usd"] is None
    assert set(answers) == set(SCHEMA)


@pytest.mark.parametrize("text, expected", [
    ("goal: style\nlabled_examples: 5\n", ['answers.yaml:2: labled_examples: unknown key (did you mean "labeled_examples"?)']),
    ("goal: factz\n", ['answers.yaml:1: goal: "factz" is not one of', 'did you mean "facts"']),
    ("goal: style\nlabeled_examples: -3\n", ["answers.yaml:2: labeled_examples: must be >= 0, got -3"]),
    ("goal: style\nlabeled_examples: 2.5\n", ["labeled_examples: expected a whole number"]),
    ("goal: style\ngpu_count: many\n", ['gpu_count: expected a whole number >= 0, got text "many"']),
    ("goal: style\nprivate_data: 'yes'\n", ["private_data: expected true or false (unquoted), got text 'yes'"]),
    ("goal: facts\nknowledge_changes: no\n", ["knowledge_changes: expected one of never, rarely, often, got a boolean",
                                              "YAML reads unquoted yes/no/on/off"]),
    ("goal: style\nbase_model: on\n", ["base_model: expected text", "became true; quote the value"]),
    ("goal: style\nbase_model_params_b: 0\n", ["base_model_params_b: must be > 0"]),
    ("goal: style\nbudget_usd: -1\n", ["budget_usd: must be >= 0"]),
    ("goal: style\ngpu_memory_gb: [80]\n", ["gpu_memory_gb: expected a number >= 0, got a list"]),
    ("prompting_result: fails\n", ["missing key goal"]),
    ("", ["the file is empty"]),
    ("- goal: style\n", ["expected a mapping of key: value at the top level, got a list"]),
])
def test_each_error_kind(tmp_path, text, expected):
    message = "\n".join(problems_of(tmp_path, text))
    for part in expected:
        assert part in message
    assert str(tmp_path / "answers.yaml") in message


def test_all_problems_at_once(tmp_path):
    lines = problems_of(tmp_path, "goal: factz\nlabled_examples: 5\nknowledge_changes: no\nlabeled_examples: -3\n"
                                  "private_data: 'yes'\n")
    assert len(lines) == 5
    assert [line.split(": ")[1] for line in lines] == ["goal", "labled_examples", "knowledge_changes",
                                                        "labeled_examples", "private_data"]


def test_malformed_yaml_names_line_and_column(tmp_path):
    message = "\n".join(problems_of(tmp_path, "goal: style\nlabeled_examples: [1, 2\n"))
    assert "answers.yaml:3:1: malformed YAML" in message


def test_missing_file(tmp_path):
    with pytest.raises(RungError, match="answers file not found"):
        load_answers(tmp_path / "nope.yaml")


def test_human_counts_and_floats_are_accepted():
    answers, problems = validate_answers({"goal": "domain_language", "domain_corpus_tokens": "50M",
                                          "labeled_examples": "10,000", "prompt_tokens": 5.0e3, "gpu_memory_gb": 80.0})
    assert not problems
    assert answers["domain_corpus_tokens"] == 50_000_000 and answers["labeled_examples"] == 10_000
    assert answers["prompt_tokens"] == 5000 and isinstance(answers["prompt_tokens"], int)


def test_cli_bad_answers_exit_2_no_traceback(rung, tmp_path):
    path = write(tmp_path, "goal: factz\nlabled_examples: 5\ngpu_count: -1\n")
    for command in ("advise", "plan"):
        args = [command, "--answers", path] + (["--out", tmp_path / "plan"] if command == "plan" else [])
        result = rung(*args)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert result.stderr.count(str(path)) == 3
        assert result.stdout == ""
    assert not (tmp_path / "plan").exists()  # nothing half-written


def test_console_script_exit_code_and_stderr(tmp_path):
    """Through the real entry point (advisor.cli:main): one line per problem on stderr, exit 2."""
    path = write(tmp_path, "goal: style\nlabeled_examples: -1\nknowledge_changes: on\n")
    proc = subprocess.run([sys.executable, "-c", "from rung.cli.main import main; main()", "advise", "--answers", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ")
