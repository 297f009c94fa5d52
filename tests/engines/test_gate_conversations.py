"""What the gate asks each model, and what it concludes, with models replaced by scripted answerers (no weights):
the candidate gets its training conversation, the baseline the row's system message plus its best prompt, and
the verdict says SHIP only for a significant gain and "significantly worse" for a significant loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rung.engines import gate as gate_module
from rung.core.settings import GateSettings
from rung.engines.gate import DONT_SHIP, SHIP, GateInputs

SYSTEM = "You are a SQL assistant. Schema: t(a, b)"


class Scripted:
    """A ChatModel that answers row i with answers[i] and records the conversations it was asked."""

    def __init__(self, answers: list[str]):
        self.answers, self.asked = answers, []

    def chat(self, conversations, *, max_new_tokens, temperature=0.0, top_p=None):
        self.asked += conversations
        return self.answers[:len(conversations)]

    @property
    def usage(self):
        return {"requests": len(self.asked)}


def write_rows(path: Path, n: int) -> Path:
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"question {i}"},
                          {"role": "assistant", "content": f"answer {i}"}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_gate(tmp_path, monkeypatch, baseline_answers, candidate_answers, *, candidate="openai:candidate",
             examples: Path | None = None, num_examples: int = 2):
    n = len(baseline_answers)
    models = {"openai:baseline": Scripted(baseline_answers), candidate: Scripted(candidate_answers)}
    monkeypatch.setattr(gate_module, "open_chat_model", lambda spec, **kwargs: models[spec])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # the endpoint settings are checked before any model is asked
    settings = GateSettings(baseline="openai:baseline", candidate=str(candidate), metric="exact_match",
                            api_base="http://127.0.0.1:9/v1", num_examples=num_examples, max_rows=n)
    inputs = GateInputs(eval_path=write_rows(tmp_path / "eval.jsonl", n), examples_path=examples)
    return gate_module.gate(settings, inputs, echo=lambda line: None), models


def trained_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "resolved_config.yaml").write_text("pipeline: sft\n")  # what rung's trainers write beside a model
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    return folder


def test_the_candidate_is_asked_its_training_conversation_and_the_baseline_gets_the_system_message(tmp_path,
                                                                                                     monkeypatch):
    candidate = trained_folder(tmp_path)
    examples = write_rows(tmp_path / "examples.jsonl", 3)
    _, models = run_gate(tmp_path, monkeypatch, ["x"] * 4, ["x"] * 4, candidate=str(candidate), examples=examples)
    asked_candidate, asked_baseline = models[str(candidate)].asked, models["openai:baseline"].asked
    assert asked_candidate[0] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "question 0"}]
    assert asked_baseline[0][0]["role"] == "system" and asked_baseline[0][0]["content"].startswith(SYSTEM + "\n\n")
    assert [m["role"] for m in asked_baseline[0]] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert asked_baseline[0][-1] == {"role": "user", "content": "question 0"}


def test_a_model_rung_did_not_train_gets_the_baselines_prompt(tmp_path, monkeypatch):
    _, models = run_gate(tmp_path, monkeypatch, ["x"] * 3, ["x"] * 3)
    assert models["openai:candidate"].asked == models["openai:baseline"].asked


def test_a_significantly_worse_candidate_is_called_that(tmp_path, monkeypatch):
    n = 12
    result, _ = run_gate(tmp_path, monkeypatch, [f"answer {i}" for i in range(n)], ["prose"] * n)
    assert result["verdict"] == DONT_SHIP
    assert result["difference"]["significant"] and result["difference"]["difference"] == -1
    assert result["reason"].startswith("the candidate is significantly worse: difference -1.000")
    assert "not significantly better" not in result["reason"]


def test_guarantee_a_positive_difference_that_is_not_significant_does_not_ship(tmp_path, monkeypatch):
    # 3 rows won, none lost: +0.3 on 10 rows, but McNemar's exact p = 0.25
    baseline = ["wrong"] * 10
    candidate = [f"answer {i}" for i in range(3)] + ["wrong"] * 7
    result, _ = run_gate(tmp_path, monkeypatch, baseline, candidate)
    assert result["difference"]["difference"] == pytest.approx(0.3) and not result["difference"]["significant"]
    assert result["verdict"] == DONT_SHIP
    assert result["reason"].startswith("the candidate is not significantly better: difference +0.300")


def test_a_significantly_better_candidate_ships(tmp_path, monkeypatch):
    n = 12
    result, _ = run_gate(tmp_path, monkeypatch, ["wrong"] * n, [f"answer {i}" for i in range(n)])
    assert result["verdict"] == SHIP and result["difference"]["significant"]
