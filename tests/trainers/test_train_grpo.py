"""`rung train grpo`: the reward rises on a task the base model half-does, the reward hook reads TRL's completions,
the data shapes, every input problem before any write, and SIGKILL then --resume.

The task builtin:tiny half-does: its first token is nearly uniform over 4,096 tokens, and 29% of that mass is on
tokens whose text starts with a letter a-h. The reward is rung's regex metric `^[a-h]` on one-token completions, so
the exact probability of a rewarded answer can be read off the first-token logits before and after training, with no
sampling noise. Measured here: 0.29 before; 0.74 after the 12 full-weight steps at 1e-2 below (0.37 after 8, 0.97 after 15).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rung.trainers import data
from rung.trainers.grpo import trl_reward

PATTERN = "^[a-h]"
PROMPTS = [[{"role": "user", "content": f"Question {i}: say something."}] for i in range(12)]


def write_prompts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))  # a prompt alone: regex needs no reference
    return path


def rewarded_mass(spec: str) -> float:
    """P(the first generated token's text starts with a-h), averaged over the prompts: exact, from the logits."""
    import torch

    from rung.core.models import load_for_inference

    model, tokenizer = load_for_inference(spec)
    tokenizer.padding_side = "left"
    batch = tokenizer.apply_chat_template(PROMPTS, add_generation_prompt=True, return_tensors="pt", padding=True,
                                          return_dict=True)
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits[:, -1, :].float(), -1).mean(0)
    hit = [i for i in range(probs.shape[0]) if re.search(PATTERN, tokenizer.decode([i]).strip())]
    return float(probs[hit].sum())


GRPO_ARGS = ["--metric", "regex", "--set", f"metric_options={{pattern: '{PATTERN}'}}", "--max-completion-length", "1",
             "--eval-fraction", "0", "--logging-steps", "1", "--set", "warmup_ratio=0",
             "--set", "lr_scheduler_type=constant"]


@pytest.mark.slow
def test_grpo_raises_the_reward_the_base_half_earns(tmp_path, rung, tiny_model_dir):
    out = tmp_path / "out"
    result = rung("train", "grpo", "--data", write_prompts(tmp_path / "prompts.jsonl"), "--out", out,
                  "--adapter", "full", "--learning-rate", "1e-2", "--num-generations", "16", "--batch-size", "32",
                  "--max-steps", "12", "--save-steps", "1000", *GRPO_ARGS)
    assert result.exit_code == 0, result.output
    assert "2 prompts x 16 completions per step" in result.output and "reward: regex" in result.output
    before, after = rewarded_mass(str(tiny_model_dir)), rewarded_mass(str(out))
    assert 0.2 < before < 0.4                          # the base half-does it: something to reinforce
    assert after > before + 0.15, (before, after)      # 0.29 -> 0.5+ here
    metrics = json.loads((out / "metrics.json").read_text())
    rewards = [h["reward"] for h in metrics["log_history"] if "reward" in h]
    assert len(rewards) == 12 and metrics["first_reward"] == rewards[0] and metrics["final_reward"] == rewards[-1]
    assert sum(rewards[-3:]) > sum(rewards[:3])        # the logged curve rises too
    for name in ("reward.png", "loss.png", "samples.md", "resolved_config.yaml", "model.safetensors"):
        assert (out / name).exists(), name
    assert "GRPO (reward regex" in (out / "samples.md").read_text()
    assert not (out / "training_args.bin").exists()   # a pickle: never left in the run folder


def test_the_reward_hook_reads_conversational_completions_and_routes_replay_rows():
    calls = []

    def task(outputs, references):
        calls.append(("task", outputs, references))
        return [float(o == r) for o, r in zip(outputs, references)]

    def general(outputs, references):
        calls.append(("replay", outputs, references))
        return [0.5 for _ in outputs]

    reward = trl_reward(task, "exact_match", general)
    assert reward.__name__ == "exact_match"  # TRL logs rewards/exact_match/mean
    completions = [[{"role": "assistant", "content": "SELECT 1;"}], [{"role": "assistant", "content": "no"}],
                   [{"role": "assistant", "content": "text"}]]
    rewards = reward(prompts=[[]] * 3, completions=completions, reference=["SELECT 1;", "SELECT 2;", "x"],
                     rung_source=["task", "task", "replay"], trainer_state=None)
    assert rewards == [1.0, 0.0, 0.5]
    assert calls == [("task", ["SELECT 1;", "no"], ["SELECT 1;", "SELECT 2;"]), ("replay", ["text"], ["x"])]
    assert trl_reward(task, "m")(prompts=["p"], completions=["a"]) == [0.0]  # text completions, no reference column


def test_grpo_rows_take_every_sft_shape_and_the_probe_rows(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "user", "content": "Name a colour."}]},
    ]) + "\n")
    examples = data.load_examples(rows, "grpo")
    assert examples[0] == {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
                           "reference": "4"}
    assert examples[1] == {"prompt": [{"role": "user", "content": "Name a colour."}], "reference": ""}
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"input": "2+2?", "output": "4"}) + "\n" + json.dumps({"prompt": "3+3?"}) + "\n"
                    + json.dumps({"prompt": "1+1?", "completion": "2"}) + "\n")
    assert data.load_examples(text, "grpo") == [{"prompt": "2+2?", "reference": "4"},
                                                {"prompt": "3+3?", "reference": ""},
                                                {"prompt": "1+1?", "reference": "2"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "x"}) + "\n" + json.dumps({"prompt": "a"}) + "\n"
                   + json.dumps({"prompt": [{"role": "user", "content": "b"}]}) + "\n")
    report = data.check_file(bad, "grpo")
    assert any(':1: missing key "prompt"' in p for p in report.problems)
    assert any("rows mix formats" in p for p in report.problems)


@pytest.mark.parametrize("extra, message", [
    (["--num-generations", "3", "--batch-size", "8"],
     "8 completions per step does not divide into groups of --num-generations 3"),
    (["--replay-ratio", "0.2"], "--replay-ratio 0.2 needs --replay FILE"),
    (["--replay", "builtin"], "--replay builtin needs --replay-ratio R"),
    (["--replay", "builtin", "--replay-ratio", "1"], "--replay-ratio: must be a finite number at least 0 and below 1"),
    (["--num-generations", "1"], "--num-generations: must be"),
])
def test_input_problems_are_one_line_each_and_nothing_is_written(tmp_path, extra, message):
    from click.testing import CliRunner

    from rung.cli.main import cli

    out = tmp_path / "out"
    args = ["train", "grpo", "--data", str(write_prompts(tmp_path / "p.jsonl")), "--out", str(out),
            "--metric", "regex", "--set", "metric_options={pattern: x}", *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_a_metric_that_compares_needs_references(tmp_path, rung):
    result = rung("train", "grpo", "--data", write_prompts(tmp_path / "p.jsonl"), "--out", tmp_path / "out",
                  "--metric", "exact_match")
    assert result.exit_code == 2
    assert "12 of 12 rows have no reference, and the exact_match reward compares with one" in result.output
    unknown = rung("train", "grpo", "--data", tmp_path / "p.jsonl", "--out", tmp_path / "out", "--metric", "exakt")
    assert unknown.exit_code == 2 and 'unknown metric "exakt"' in unknown.output and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_grpo_sigkill_then_resume_continues_at_the_checkpoint_step(tmp_path, rung, tiny_model_dir):
    max_steps = 16  # one-token completions: a step (4 prompts x 2 generations) takes well under a second here
    out = tmp_path / "out"
    args = ["train", "grpo", "--data", str(write_prompts(tmp_path / "p.jsonl")), "--out", str(out),
            "--max-steps", str(max_steps), "--save-steps", "3", "--num-generations", "2", "--batch-size", "8",
            *GRPO_ARGS]
    process = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    first = out / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.monotonic() + 180
    try:
        while not first.exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.05)
        time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "the run finished before the kill"
    reached = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")
                  if (p / "trainer_state.json").exists())
    assert 3 <= reached < max_steps

    refused = rung(*args)
    assert refused.exit_code == 2 and f"already has checkpoints (last: step {reached}); pass --resume" in refused.output
    result = rung(*args, "--resume")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == reached and metrics["global_step"] == max_steps
    assert metrics["steps_this_run"] == max_steps - reached   # continued, did not restart at 0
    logged = [h["step"] for h in metrics["log_history"] if "reward" in h]
    assert logged[0] < reached and logged[-1] == max_steps      # the history before the kill came back too


def test_use_vllm_without_vllm_is_one_line_before_any_write(tmp_path, rung):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    out = tmp_path / "out"
    result = rung("train", "grpo", "--data", write_prompts(tmp_path / "p.jsonl"), "--out", out, "--use-vllm",
                  "--metric", "regex", "--set", "metric_options={pattern: x}")
    assert result.exit_code == 2 and "--use-vllm needs vLLM: pip install vllm" in result.output
    assert not out.exists()


def test_a_launched_grpo_run_starts_the_engines_worker(tmp_path, rung):
    out = tmp_path / "out"
    result = rung("train", "grpo", "--data", write_prompts(tmp_path / "p.jsonl"), "--out", out, "--metric", "regex",
                  "--set", "metric_options={pattern: x}", "--gpus", "2", "--cpu", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "-m rung.engines.grpo --job" in result.output  # the reward is resolved above the trainers' layer
    job = json.loads((out / "grpo_job.json").read_text())
    assert job["pipeline"] == "grpo" and job["metric"] == "regex"
    assert job["settings"]["metric_options"] == {"pattern": "x"}
    from rung.trainers.worker import main

    assert main(["--job", str(out / "grpo_job.json")]) == 2  # the trainers' own worker says where it runs
