"""The journey as a person takes it, in a real terminal (pty): `rung ask` -> `rung plan` -> `rung run`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

ROOT = Path(__file__).resolve().parents[2]
RUNG = str(Path(sys.executable).with_name("rung"))


def spawn(args: list[str], cwd: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TERM": "dumb", "COLUMNS": "120"}
    return pexpect.spawn(RUNG, args, cwd=str(cwd), env=env, encoding="utf-8", timeout=120, dimensions=(50, 120))


@pytest.mark.slow
def test_ask_then_plan_then_run_in_a_terminal(tmp_path):
    shutil.copytree(ROOT / "examples" / "tone" / "data", tmp_path / "data")

    ask = spawn(["ask", "--out", "answers.yaml"], tmp_path)
    ask.expect(r"What do you want the model to do better\?")
    ask.expect("Choose 1-8 or a name: ")
    ask.sendline("tone please")  # not a choice: asked again with the reason
    ask.expect("is not a choice")
    ask.sendline("style")
    ask.expect(r"How does your best prompt do today\?")
    ask.expect(r"\[untried\]: ")
    ask.sendline("")  # Enter takes the default
    # rung offers to measure before it advises: the toy model scores ~0 on the held-out notes, so the measured
    # evidence overrides "untried" (prompting fails -> a bigger model)
    ask.expect("Held-out examples to measure on")
    ask.sendline("data/eval.jsonl")
    ask.expect("Model to measure")
    ask.sendline("")  # builtin:tiny
    ask.expect("Labelled examples for a few-shot prompt")
    ask.sendline("data/examples.jsonl")
    ask.expect(r"Probing builtin:tiny on 6 held-out rows")
    ask.expect("Evidence saved to", timeout=300)
    ask.expect("Recommendation: bigger_model")
    ask.expect("-> prompting_result fails; it replaces your answer prompting_result: untried")
    ask.expect("Saved your answers to answers.yaml")
    ask.expect(r"With the evidence: rung plan --answers answers.yaml --evidence \S*probe/evidence.yaml")
    ask.expect(pexpect.EOF)
    ask.close()
    assert ask.exitstatus == 0
    assert (tmp_path / "answers.yaml").read_text().startswith("goal: style")

    plan = spawn(["plan", "--answers", "answers.yaml", "--out", "project", "--data", "examples=data/examples.jsonl",
                  "--data", "eval=data/eval.jsonl"], tmp_path)
    plan.expect("Recommendation: prompting")
    plan.expect("Next: read project/PLAN.md, then: rung run project/plan.yaml")
    plan.expect(pexpect.EOF)
    plan.close()
    assert plan.exitstatus == 0

    run = spawn(["run", "project/plan.yaml", "--set", "prompting.max_eval_examples=3",
                 "--set", "prompting.max_new_tokens=8"], tmp_path)
    run.expect("Running project/plan.yaml with resolved settings:")
    run.expect(r"\[1/1\] prompting \(prompting\)")
    run.expect(r"\[1/1\] prompting: done in")
    run.expect(r"Report: (\S+report.md)")
    report = Path(run.match.group(1).strip())
    run.expect(pexpect.EOF)
    run.close()
    assert run.exitstatus == 0
    assert report == tmp_path / "project" / "report.md"
    text = report.read_text()
    assert "route: **prompting**" in text and "few_shot/exact_match" in text
    assert (tmp_path / "project" / "prompting" / "few_shot_prompt.txt").exists()
