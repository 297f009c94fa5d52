"""--resume reaches the trainer: `rung run --resume` and `rung train dpo --resume` hand the last complete checkpoint
to trainer.train(resume_from_checkpoint=...), with no training. The real trainers are built (TRL tokenizes a few
rows); rung's one call into their train() (rung.trainers.common.run_trainer) is replaced: it records what it was
given, then stops the run. The SIGKILL tests in
test_train_resume.py and tests/run/test_run_resume_checkpoint.py show the same by training."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class TrainCalled(Exception):
    """Raised by the stand-in train(): the pipeline got as far as training."""


def fake_checkpoints(folder: Path) -> None:
    """Two complete checkpoints and a newer, incomplete one (killed while saving: no trainer_state.json)."""
    for step in (5, 10, 15):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if step != 15:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")


def stand_in_train(calls: list, interrupt_first: bool = False):
    def train(trainer, resume_from_checkpoint=None):
        calls.append(resume_from_checkpoint)
        if interrupt_first and len(calls) == 1:  # the first run: checkpoints were written, then Ctrl-C
            fake_checkpoints(Path(trainer.args.output_dir))
            raise KeyboardInterrupt
        raise TrainCalled

    return train


@pytest.mark.parametrize("engine", ["sft", "dpo"])
def test_rung_run_resume_hands_the_step_its_last_checkpoint(tmp_path, rung, tiny_model_dir, monkeypatch, engine):
    from rung.trainers import common

    (tmp_path / "data").mkdir()
    source, role = {"sft": ("sql_assistant/data/train.jsonl", "train"),
                    "dpo": ("preferences/data/pairs.jsonl", "preferences")}[engine]
    rows = (EXAMPLES / source).read_text().splitlines()[:4]
    (tmp_path / "data" / "rows.jsonl").write_text("\n".join(rows) + "\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "version": 1, "name": "resumed", "route": "fine_tuning", "method": engine, "adapter": "lora",
        "base_model": "builtin:tiny", "data": {role: "data/rows.jsonl"},
        "steps": [{"id": engine, "engine": engine, "settings": {"max_steps": 20, "save_steps": 5,
                                                              "eval_fraction": 0.0}}]}))
    calls: list = []
    monkeypatch.setattr(common, "run_trainer", stand_in_train(calls, interrupt_first=True))
    first = rung("run", plan, "--out", tmp_path / "run")
    assert first.exit_code == 130 and calls == [None], first.output

    with pytest.raises(TrainCalled):
        rung("run", plan, "--out", tmp_path / "run", "--resume")
    checkpoints = tmp_path / "run" / engine / "checkpoints"
    assert calls == [None, str(checkpoints / "checkpoint-10")]


def test_train_dpo_resume_hands_the_trainer_its_last_checkpoint(tmp_path, rung, tiny_model_dir, monkeypatch):
    from rung.trainers import common

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join((EXAMPLES / "preferences/data/pairs.jsonl").read_text().splitlines()[:4]) + "\n")
    out = tmp_path / "out"
    calls: list = []
    monkeypatch.setattr(common, "run_trainer", stand_in_train(calls, interrupt_first=True))
    args = ["train", "dpo", "--data", pairs, "--out", out, "--max-steps", "20", "--eval-fraction", "0"]
    interrupted = rung(*args)
    assert interrupted.exit_code == 1 and "Aborted!" in interrupted.output, interrupted.output  # click's Ctrl-C
    assert calls == [None]
    refused = rung(*args)
    assert refused.exit_code == 2 and "already has checkpoints (last: step 10); pass --resume" in refused.output
    assert calls == [None]
    with pytest.raises(TrainCalled):
        rung(*args, "--resume")
    assert calls == [None, str(out / "checkpoints" / "checkpoint-10")]
