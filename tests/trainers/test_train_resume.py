"""A run killed with SIGKILL after a checkpoint resumes at that step with --resume, not at step 0; without
--resume, existing checkpoints stop the run instead of silently starting over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAX_STEPS = 60


def test_sigkill_then_resume_continues_at_the_checkpoint_step(tmp_path, rung, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join((EXAMPLES / "sql_assistant/data/train.jsonl").read_text().splitlines()[:40]) + "\n")
    out = tmp_path / "out"
    args = ["train", "sft", "--data", str(data), "--out", str(out), "--max-steps", str(MAX_STEPS),
            "--save-steps", "5", "--logging-steps", "5", "--eval-fraction", "0", "--batch-size", "2"]
    process = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    first = out / "checkpoints" / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 120
    try:
        while not first.exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")
                   if (p / "trainer_state.json").exists())
    reached = steps[-1]
    assert 5 <= reached < MAX_STEPS

    refused = rung(*args)  # same command without --resume: refuses, names the step and the flag
    assert refused.exit_code == 2
    assert f"already has checkpoints (last: step {reached}); pass --resume" in refused.output

    result = rung(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert f"at step {reached}" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == reached
    assert metrics["global_step"] == MAX_STEPS
    assert metrics["steps_this_run"] == MAX_STEPS - reached  # continued, did not restart at 0
    logged = [h["step"] for h in metrics["log_history"] if "loss" in h]
    assert logged[0] < reached  # the history from before the kill was restored with the checkpoint


def test_dpo_sigkill_then_resume_continues_at_the_checkpoint_step(tmp_path, rung, tiny_model_dir):
    """The same for `rung train dpo` (LoRA from the base model): the checkpoint holds the adapter, the optimizer and
    the scheduler; the resumed run skips the 'before' pair scores (they were taken before the kill)."""
    DPO_MAX_STEPS = 20  # a DPO step with a checkpoint every 5 takes ~0.4 s here
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join((EXAMPLES / "preferences/data/pairs.jsonl").read_text().splitlines()[:16]) + "\n")
    out = tmp_path / "out"
    args = ["train", "dpo", "--data", str(pairs), "--out", str(out), "--max-steps", str(DPO_MAX_STEPS),
            "--save-steps", "5", "--logging-steps", "5", "--eval-fraction", "0", "--batch-size", "2"]
    process = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    first = out / "checkpoints" / "checkpoint-5" / "trainer_state.json"
    deadline = time.monotonic() + 120
    try:
        while not first.exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists(), "the run finished before the kill"
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")
                   if (p / "trainer_state.json").exists())
    reached = steps[-1]
    assert 5 <= reached < DPO_MAX_STEPS

    refused = rung(*args)
    assert refused.exit_code == 2
    assert f"already has checkpoints (last: step {reached}); pass --resume" in refused.output

    result = rung(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert f"Resuming from {out / 'checkpoints' / f'checkpoint-{reached}'} at step {reached}" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == reached
    assert metrics["global_step"] == DPO_MAX_STEPS
    assert metrics["steps_this_run"] == DPO_MAX_STEPS - reached  # continued, did not restart at 0
    assert metrics["pairs_before"] is None and metrics["pairs_after"]["accuracy"] is not None
    logged = [h["step"] for h in metrics["log_history"] if "loss" in h]
    assert logged[0] < reached and logged[-1] == DPO_MAX_STEPS
    assert (out / "adapter_model.safetensors").exists()
