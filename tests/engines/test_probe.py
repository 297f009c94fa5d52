"""`rung probe`: evidence from zero-shot, few-shot, RAG and a short LoRA on held-out rows; resume; endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rung.advisor.evidence import validate_evidence

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TONE = EXAMPLES / "tone"


def answers_file(tmp_path: Path, goal: str = "style") -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(f"goal: {goal}\n")
    return path


def rows_file(tmp_path: Path, n: int) -> Path:
    rows = (TONE / "data" / "eval.jsonl").read_text().splitlines()[:n]
    path = tmp_path / f"eval{n}.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("argv, expected", [
    (["--target", "1.5"], "--target: must be a finite number above 0 and at most 1, got 1.5"),
    (["--target", "nan"], "--target: must be a finite number above 0 and at most 1, got nan"),
    (["--metric", "token_fi"], 'unknown metric "token_fi" (did you mean "token_f1"?)'),
])
def test_bad_requests_fail_before_any_model_loads(rung, tmp_path, argv, expected):
    result = rung("probe", "--answers", answers_file(tmp_path), "--eval", rows_file(tmp_path, 3),
                  "--model", "builtin:tiny", "--out", tmp_path / "probe", *argv)
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "probe").exists()


@pytest.mark.slow
def test_probe_writes_valid_evidence_and_resumes_without_asking_again(rung, tmp_path, monkeypatch):
    from rung.core.generation import LocalChat
    from rung.engines import probe as probe_module

    out = tmp_path / "probe"
    args = ["probe", "--answers", answers_file(tmp_path), "--eval", rows_file(tmp_path, 5), "--model",
            "builtin:tiny", "--max-new-tokens", "8", "--out", out]
    # interrupted after the first 2 rows: those stay answered
    monkeypatch.setattr(probe_module, "CHUNK", 2)
    real_chat, calls = LocalChat.chat, []

    def chat_then_die(self, conversations, **kwargs):
        calls.append(len(conversations))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_chat(self, conversations, **kwargs)

    monkeypatch.setattr(LocalChat, "chat", chat_then_die)
    interrupted = rung(*args)  # click turns Ctrl-C into "Aborted!", exit 1
    assert interrupted.exit_code == 1 and "Aborted" in interrupted.output
    assert len((out / "answers.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(LocalChat, "chat", real_chat)
    result = rung(*args)
    assert result.exit_code == 0, result.output
    assert "zero_shot: 4/5 rows (2 from an earlier run)" in result.output
    evidence = yaml.safe_load((out / "evidence.yaml").read_text())
    assert validate_evidence(evidence, "evidence.yaml") == []
    assert evidence["n"] == 5 and evidence["metric"] == "chrf" and set(evidence["rungs"]) == {"zero_shot"}
    assert (out / "probe.md").exists() and (out / "probe.png").exists()
    again = rung(*args)
    assert "zero_shot: 5/5 rows (all from an earlier run)" in again.output
    assert yaml.safe_load((out / "evidence.yaml").read_text())["rungs"] == evidence["rungs"]
    # the evidence is what `rung advise` reads
    advice = rung("advise", "--answers", answers_file(tmp_path), "--evidence", out / "evidence.yaml", "--json")
    assert json.loads(advice.output)["evidence"]["n"] == 5


@pytest.mark.slow
def test_probe_measures_few_shot_rag_and_a_short_lora(rung, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "voice.md").write_text("# Brand voice\n\nReplies start with Thanks and stay one warm sentence.\n")
    out = tmp_path / "probe"
    result = rung("probe", "--answers", answers_file(tmp_path), "--eval", rows_file(tmp_path, 3), "--model",
                  "builtin:tiny", "--examples", TONE / "data" / "examples.jsonl", "--docs", docs,
                  "--max-new-tokens", "8", "--lora-steps", "3", "--out", out)
    assert result.exit_code == 0, result.output
    evidence = yaml.safe_load((out / "evidence.yaml").read_text())
    assert set(evidence["rungs"]) == {"zero_shot", "few_shot", "rag", "lora_short"}
    assert validate_evidence(evidence, "evidence.yaml") == []
    assert (out / "lora_short" / "adapter_config.json").exists()


def test_lora_steps_0_measures_the_prompts_and_trains_nothing(rung, tmp_path):
    out = tmp_path / "probe"
    result = rung("probe", "--answers", answers_file(tmp_path), "--eval", rows_file(tmp_path, 2), "--model",
                  "builtin:tiny", "--examples", TONE / "data" / "examples.jsonl", "--max-new-tokens", "4",
                  "--lora-steps", "0", "--out", out)
    assert result.exit_code == 0, result.output
    assert set(yaml.safe_load((out / "evidence.yaml").read_text())["rungs"]) == {"zero_shot", "few_shot"}
    assert not (out / "lora_short").exists() and "lora_short" not in result.output


@pytest.mark.slow
def test_probe_through_a_real_openai_compatible_server(rung, tmp_path, transformers_server):
    base_url, name = transformers_server
    out = tmp_path / "probe"
    result = rung("probe", "--answers", answers_file(tmp_path), "--eval", rows_file(tmp_path, 3), "--model",
                  f"openai:{name}", "--api-base", base_url, "--max-new-tokens", "8", "--out", out)
    assert result.exit_code == 0, result.output
    evidence = yaml.safe_load((out / "evidence.yaml").read_text())
    assert set(evidence["rungs"]) == {"zero_shot"} and evidence["model"] == f"openai:{name}"
    assert "requests 3" in (out / "probe.md").read_text()


def test_a_dead_endpoint_is_one_line_and_leaves_no_folder(rung, tmp_path):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "probe"
    result = rung("probe", "--answers", answers_file(tmp_path), "--eval", rows_file(tmp_path, 2), "--model",
                  "openai:nobody", "--api-base", f"http://127.0.0.1:{port}/v1", "--out", out)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"cannot reach http://127.0.0.1:{port}/v1: connection refused" in result.output
    assert not out.exists()


SQL_EVAL = EXAMPLES / "sql_assistant" / "data" / "eval.jsonl"
SQL_TRAIN = EXAMPLES / "sql_assistant" / "data" / "train.jsonl"


@pytest.mark.parametrize("shots", [1, 4])
def test_guarantee_the_few_shot_prompt_holds_the_requested_examples(tmp_path, shots):
    from rung.core.rows import load_task_rows
    from rung.core.settings import ProbeSettings
    from rung.engines.probe import ProbeInputs, prompt_plans

    rows, examples = load_task_rows(SQL_EVAL)[:2], load_task_rows(SQL_TRAIN)
    plans = prompt_plans(ProbeSettings(model="builtin:tiny", num_examples=shots),
                         ProbeInputs(eval_path=SQL_EVAL, out_dir=tmp_path), rows, examples)
    few = plans["few_shot"][0]
    # the row's system message (the schema) first, then rung's instructions, in one system turn
    assert few[0]["role"] == "system" and few[0]["content"].startswith(rows[0]["system"] + "\n\n")
    pairs = [(few[i]["content"], few[i + 1]["content"]) for i in range(1, len(few) - 1, 2)]
    assert pairs == [(e["input"], e["output"]) for e in examples[:shots]]
    assert [m["role"] for m in few[1:-1]] == ["user", "assistant"] * shots
    assert few[-1] == {"role": "user", "content": rows[0]["input"]}
    zero = plans["zero_shot"][0]
    assert [m["role"] for m in zero] == ["system", "user"] and zero[0]["content"] == few[0]["content"]


def test_the_short_lora_trains_on_the_rows_with_their_system_message(tmp_path, monkeypatch):
    from rung.core.rows import load_task_rows
    from rung.core.settings import ProbeSettings
    from rung.engines.probe import ProbeInputs, short_lora
    from rung.trainers import sft

    seen = {}
    monkeypatch.setattr(sft, "train_sft", lambda settings, data, folder, echo: seen.update(data=data))
    examples = load_task_rows(SQL_TRAIN)[:3]
    short_lora(ProbeSettings(model="builtin:tiny"), ProbeInputs(eval_path=SQL_EVAL, out_dir=tmp_path), examples,
               lambda line: None)
    written = [json.loads(line) for line in seen["data"].read_text().splitlines()]
    assert written == [json.loads(line) for line in SQL_TRAIN.read_text().splitlines()[:3]]
