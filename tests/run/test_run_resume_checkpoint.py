"""`rung run PLAN --resume` after a SIGKILL in the middle of an SFT step: the step continues from its last
checkpoint, at that step, not from step 0 (docs/run.md, "Interrupted runs: --resume")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rung.run import state as run_state

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAX_STEPS = 40


def test_a_killed_sft_step_resumes_from_its_checkpoint(tmp_path, rung, tiny_model_dir):
    (tmp_path / "data").mkdir()
    rows = (EXAMPLES / "sql_assistant" / "data" / "train.jsonl").read_text().splitlines()[:40]
    (tmp_path / "data" / "train.jsonl").write_text("\n".join(rows) + "\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "version": 1, "name": "killed-sft", "route": "fine_tuning", "method": "sft", "adapter": "lora",
        "base_model": "builtin:tiny", "data": {"train": "data/train.jsonl"},
        "steps": [{"id": "sft", "engine": "sft", "description": "Supervised fine-tuning",
                   "settings": {"max_steps": MAX_STEPS, "save_steps": 5, "logging_steps": 5, "eval_fraction": 0.0,
                                "per_device_train_batch_size": 2}}]}, sort_keys=False))
    run_root = tmp_path / "run"
    checkpoints = run_root / "sft" / "checkpoints"
    process = subprocess.Popen([sys.executable, "-c", "from rung.cli.main import main; main()", "run", str(plan),
                                "--out", str(run_root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ))
    deadline = time.monotonic() + 120
    try:
        while not (checkpoints / "checkpoint-5" / "trainer_state.json").exists():
            assert process.poll() is None, "the run ended before the step's first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    state_path = run_root / run_state.STATE_FILE
    assert json.loads(state_path.read_text())["steps"]["sft"]["status"] == "running"  # no chance to say more
    reached = max(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*")
                  if (p / "trainer_state.json").exists())
    assert 5 <= reached < MAX_STEPS

    result = rung("run", plan, "--out", run_root, "--resume")
    assert result.exit_code == 0, result.output
    assert "[1/1] sft (sft, adapter lora): Supervised fine-tuning - resuming" in result.output
    assert f"Resuming from {checkpoints / f'checkpoint-{reached}'} at step {reached}" in result.output
    assert "starting at step 0" not in result.output

    step_metrics = json.loads((run_root / "sft" / "metrics.json").read_text())
    assert step_metrics["resumed_from_step"] == reached
    assert step_metrics["steps_this_run"] == MAX_STEPS - reached
    assert step_metrics["global_step"] == MAX_STEPS
    record = json.loads(state_path.read_text())["steps"]["sft"]
    assert record["status"] == "done" and record["attempts"] == 2
    assert record["metrics"]["global_step"] == MAX_STEPS
    report = (run_root / "report.md").read_text()
    assert "2 attempts" in report and f"{MAX_STEPS} steps" in report
