"""`rung ask`: through a real pty (pexpect), with piped stdin, and bad input re-asked with the reason."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def rung_executable() -> str:
    beside = Path(sys.executable).parent / "rung"
    found = str(beside) if beside.exists() else shutil.which("rung")
    if not found:
        pytest.skip("the rung console script is not installed")
    return found


def test_ask_through_a_pty(tmp_path):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(rung_executable(), ["ask", "--out", "answers.yaml"], cwd=str(tmp_path),
                          encoding="utf-8", timeout=30, dimensions=(40, 140))
    child.expect(r"What do you want the model to do better\?")
    child.expect("schema +hit a strict output schema every time")   # choices with one-line help
    child.expect("Choose 1-8 or a name: ")
    child.sendline("banana")                                          # bad input: re-asked with the reason
    child.expect('"banana" is not a choice')
    child.expect("Choose 1-8 or a name: ")
    child.sendline("3")
    child.expect(r"How does your best prompt do today\?")
    child.expect(r"\[untried\]: ")                                    # default shown
    child.sendline("inconsistent")
    child.expect(r"Can a program score an answer")                  # asked: a checker rule can still fire
    child.sendline("")                                                # default no
    child.expect(r"labelled .* examples")
    child.sendline("-5")
    child.expect("must be >= 0")
    child.sendline("2k")
    child.expect("preference pairs")
    child.sendline("")                                                # default 0
    child.expect("memory does each of your GPUs")
    child.sendline("80")
    child.expect("How many GPUs")
    child.sendline("1")
    child.expect("Budget cap")
    child.sendline("")
    child.expect("Base model")
    child.sendline("Qwen/Qwen2.5-7B-Instruct")
    child.expect("keep its general skills")
    child.expect(r"y/n \[yes\]: ")
    child.sendline("maybe")
    child.expect('"maybe" is not yes or no')
    child.sendline("y")
    child.expect("Held-out examples to measure on")                  # the offer to probe first
    child.sendline("")                                                # skipped
    child.expect(r"Recommendation: fine_tuning \(method sft, adapter lora\)")
    child.expect("Saved your answers to answers.yaml")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    saved = yaml.safe_load((tmp_path / "answers.yaml").read_text())
    assert saved["goal"] == "schema" and saved["labeled_examples"] == 2000
    assert saved["base_model"] == "Qwen/Qwen2.5-7B-Instruct" and "base_model_params_b" not in saved


def test_ask_with_piped_stdin(tmp_path):
    proc = subprocess.run([rung_executable(), "ask", "--out", "a.yaml"], input="facts\noften\ny\n",
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation: rag" in proc.stdout and "facts-private" in proc.stdout
    saved = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert saved == {"goal": "facts", "knowledge_changes": "often", "private_data": True}
    # the saved file is a valid answers file for the next command
    advise = subprocess.run([rung_executable(), "advise", "--answers", "a.yaml", "--json"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert advise.returncode == 0 and '"route": "rag"' in advise.stdout


def test_ask_input_ending_early_takes_defaults(rung, tmp_path):
    out = tmp_path / "a.yaml"
    result = rung("ask", "--out", out, input="style\n")
    assert result.exit_code == 0
    assert "input ended" in result.output and "Recommendation: prompting" in result.output
    assert yaml.safe_load(out.read_text()) == {"goal": "style"}


def test_ask_input_ending_before_goal(rung, tmp_path):
    result = rung("ask", "--out", tmp_path / "a.yaml", input="")
    assert result.exit_code == 2 and "before the goal" in result.stderr
    assert not (tmp_path / "a.yaml").exists()


def test_ask_reasks_bad_numbers_and_accepts_prefixes(rung, tmp_path):
    out = tmp_path / "a.yaml"
    answers = "domain_l\nlots\n60M\n100\n0\n\n\n0.5\nn\n"
    result = rung("ask", "--out", out, input=answers)
    assert result.exit_code == 0, result.output
    assert 'got text "lots"' in result.output
    saved = yaml.safe_load(out.read_text())
    assert saved["goal"] == "domain_language" and saved["domain_corpus_tokens"] == 60_000_000
    assert saved["keep_general_skills"] is False and saved["base_model_params_b"] == 0.5
    assert "Recommendation: continued_pretraining" in result.output
