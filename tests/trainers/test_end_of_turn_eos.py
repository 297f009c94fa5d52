"""A tokenizer whose end-of-turn token is not its EOS (Qwen base models: eos_token <|endoftext|>, turns end with
<|im_end|>): SFT and DPO on chat rows make <|im_end|> the EOS, so the model learns to stop and generation stops.

builtin:tiny hides this path (its EOS already is <|im_end|>), so `qwen_like` copies its folder and makes
<|endoftext|> the EOS in tokenizer_config.json, config.json and generation_config.json, as a Qwen base ships.
The first tests stop each pipeline where it builds its trainer (a stand-in raises there) and check the decision;
the slow ones train 3 steps and read what the output folder records.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
END_OF_TURN, ENDOFTEXT = "<|im_end|>", "<|endoftext|>"


@pytest.fixture(scope="module")
def qwen_like(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("qwen-like") / "model"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == END_OF_TURN and tokenizer_config["pad_token"] == ENDOFTEXT
    tokenizer_config["eos_token"] = ENDOFTEXT
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    ids = token_ids(folder)
    for name in ("config.json", "generation_config.json"):
        config = json.loads((folder / name).read_text())
        config["eos_token_id"] = ids[ENDOFTEXT]
        (folder / name).write_text(json.dumps(config, indent=2))
    return folder


def token_ids(folder: Path) -> dict[str, int]:
    from rung.core.models import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    return {token: tokenizer.convert_tokens_to_ids(token) for token in (END_OF_TURN, ENDOFTEXT)}


def chat_rows(tmp_path: Path, count: int = 8) -> Path:
    rows = (EXAMPLES / "sql_assistant" / "data" / "train.jsonl").read_text().splitlines()[:count]
    assert all('"messages"' in row for row in rows)
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def pair_rows(tmp_path: Path, count: int = 8) -> Path:
    rows = (EXAMPLES / "preferences" / "data" / "pairs.jsonl").read_text().splitlines()[:count]
    assert all(json.loads(row)["prompt"][-1]["role"] == "user" for row in rows)  # conversational pairs
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


class TrainerBuilt(Exception):
    """Raised where training would start: the pipeline built its real trainer and got as far as train()."""


def stand_in(captured: dict):
    """Replaces rung's one call into the trainer's loop (rung.trainers.common.run_trainer): records the trainer's
    config and the tokenizer's EOS as the built trainer holds them, then stops."""
    def run_trainer(trainer, checkpoint):
        captured["args"] = trainer.args
        captured["eos_token_then"] = trainer.processing_class.eos_token
        raise TrainerBuilt

    return run_trainer


# ---------------------------------------------------------------------------------------------- no training


def test_the_copy_is_qwen_like_and_its_turns_end_with_another_token(qwen_like):
    from rung.core.models import load_tokenizer
    from rung.trainers.common import end_of_turn_token

    tokenizer = load_tokenizer(str(qwen_like))
    assert tokenizer.eos_token == ENDOFTEXT
    token, note = end_of_turn_token(tokenizer)
    assert token == END_OF_TURN
    assert f"not the EOS {ENDOFTEXT}: using {END_OF_TURN} as EOS" in note


def test_sft_hands_the_end_of_turn_token_to_its_trainer_config(qwen_like, tmp_path, monkeypatch):
    from rung.core.settings import SFTSettings
    from rung.trainers import common
    from rung.trainers.sft import train_sft

    captured: dict = {}
    monkeypatch.setattr(common, "run_trainer", stand_in(captured))
    lines: list[str] = []
    settings = SFTSettings(model_name_or_path=str(qwen_like), max_steps=3, eval_fraction=0.0)
    with pytest.raises(TrainerBuilt):
        train_sft(settings, chat_rows(tmp_path), tmp_path / "out", echo=lines.append)
    assert captured["args"].eos_token == END_OF_TURN  # TRL sets it on the tokenizer, model config and generation
    assert f"Template: assistant turns end with {END_OF_TURN}, not the EOS {ENDOFTEXT}" in "\n".join(lines)


def test_sft_leaves_an_eos_that_already_ends_turns_alone(tiny_model_dir, tmp_path, monkeypatch):
    from rung.core.settings import SFTSettings
    from rung.trainers import common
    from rung.trainers.sft import train_sft

    captured: dict = {}
    monkeypatch.setattr(common, "run_trainer", stand_in(captured))
    with pytest.raises(TrainerBuilt):
        train_sft(SFTSettings(max_steps=3, eval_fraction=0.0), chat_rows(tmp_path), tmp_path / "out",
                  echo=lambda _: None)
    assert captured["args"].eos_token is None and captured["eos_token_then"] == END_OF_TURN


def test_dpo_sets_the_end_of_turn_token_as_eos_before_its_trainer(qwen_like, tmp_path, monkeypatch):
    from rung.core.settings import DPOSettings
    from rung.trainers import common
    from rung.trainers.dpo import train_dpo

    captured: dict = {}
    monkeypatch.setattr(common, "run_trainer", stand_in(captured))
    lines: list[str] = []
    settings = DPOSettings(model_name_or_path=str(qwen_like), max_steps=3, eval_fraction=0.0)
    with pytest.raises(TrainerBuilt):
        train_dpo(settings, pair_rows(tmp_path), tmp_path / "out", echo=lines.append)
    # DPOConfig has no eos_token: the tokenizer is the record (the Trainer aligns the model's configs with it)
    assert captured["eos_token_then"] == END_OF_TURN
    assert f"Template: assistant turns end with {END_OF_TURN}, not the EOS {ENDOFTEXT}" in "\n".join(lines)


# ---------------------------------------------------------------------------------------------- training


def assert_output_stops_at_end_of_turn(out: Path, ids: dict[str, int]) -> None:
    from rung.core.models import load_for_inference
    from rung.trainers.generate import stop_ids

    assert json.loads((out / "tokenizer_config.json").read_text())["eos_token"] == END_OF_TURN
    model, tokenizer = load_for_inference(str(out))
    assert tokenizer.eos_token == END_OF_TURN
    assert ids[END_OF_TURN] in stop_ids(model, tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_sft_output_records_the_end_of_turn_token_as_eos(qwen_like, tmp_path, adapter):
    from rung.core.settings import SFTSettings
    from rung.trainers.sft import train_sft

    ids = token_ids(qwen_like)
    settings = SFTSettings(model_name_or_path=str(qwen_like), adapter=adapter, max_steps=3,
                           per_device_train_batch_size=2, eval_fraction=0.0, save_steps=1000, logging_steps=1)
    out = tmp_path / "out"
    summary = train_sft(settings, chat_rows(tmp_path), out, echo=lambda _: None)
    assert summary["global_step"] == 3
    assert json.loads((out / "metrics.json").read_text())["eos_token"] == END_OF_TURN
    assert_output_stops_at_end_of_turn(out, ids)
    if adapter == "full":  # full weights carry the model's own configs: TRL mirrored the EOS onto both
        assert json.loads((out / "config.json").read_text())["eos_token_id"] == ids[END_OF_TURN]
        assert ids[END_OF_TURN] in json.loads((out / "generation_config.json").read_text())["eos_token_id"]


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_dpo_output_records_the_end_of_turn_token_as_eos(qwen_like, tmp_path, adapter):
    from rung.core.settings import DPOSettings
    from rung.trainers.dpo import train_dpo

    ids = token_ids(qwen_like)
    settings = DPOSettings(model_name_or_path=str(qwen_like), adapter=adapter, max_steps=3,
                           per_device_train_batch_size=2, eval_fraction=0.0, save_steps=1000, logging_steps=1)
    out = tmp_path / "out"
    summary = train_dpo(settings, pair_rows(tmp_path), out, echo=lambda _: None)
    assert summary["global_step"] == 3
    assert_output_stops_at_end_of_turn(out, ids)
    if adapter == "full":
        generation = json.loads((out / "generation_config.json").read_text())["eos_token_id"]
        assert generation[0] == ids[END_OF_TURN] and ids[ENDOFTEXT] in generation
