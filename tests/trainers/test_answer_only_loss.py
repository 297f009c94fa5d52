"""A chat template without {% generation %} markers (SmolLM2's ChatML is one): SFT gives TRL the chat rows as
prompt/completion rows, so the loss is on the answer only, not on the system message repeated in every row;
and the conversation the gate asks a trained candidate is, token for token, the prompt training showed it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rung.core.models import CHATML_TEMPLATE
from rung.core.rows import conversation, normalise

pytestmark = pytest.mark.slow

SQL_TRAIN = Path(__file__).resolve().parents[2] / "examples" / "sql_assistant" / "data" / "train.jsonl"
UNMARKED = CHATML_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")


@pytest.fixture(scope="module")
def unmarked_model(tmp_path_factory, tiny_model_dir):
    """builtin:tiny with a ChatML template that has no generation markers."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("unmarked") / "model"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = UNMARKED
    tokenizer.save_pretrained(folder)
    return folder


def test_the_loss_covers_the_answer_only_and_the_prompt_is_what_the_gate_asks(unmarked_model, tmp_path):
    from datasets import Dataset
    from trl import SFTTrainer
    from trl.chat_template_utils import has_generation_markers

    from rung.core.models import load_model_and_tokenizer
    from rung.core.settings import SFTSettings
    from rung.trainers import data, device
    from rung.trainers.sft import build_sft_config

    model, tokenizer = load_model_and_tokenizer(str(unmarked_model))
    assert not has_generation_markers(tokenizer.chat_template)
    examples = data.load_examples(SQL_TRAIN, "sft")[:3]
    settings = SFTSettings(model_name_or_path=str(unmarked_model), max_length=256)
    config, lora = build_sft_config(settings, tmp_path / "out", device.detect_device(), has_eval=False,
                                    assistant_only_loss=False, eos_token=None)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(data.completion_rows(examples)),
                         processing_class=tokenizer, peft_config=lora)
    for example, processed in zip(examples, trainer.train_dataset):
        ids, labels = processed["input_ids"], processed["labels"]
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label == -100 for label in labels[:start]) and labels[start:] == ids[start:]
        answer = example["messages"][-1]["content"]
        assert tokenizer.decode(ids[start:]) == answer + "<|im_end|>\n"
        # the system message (the schema) is in the sequence, but carries no loss
        assert example["messages"][0]["content"] in tokenizer.decode(ids[:start])
        # the gate's candidate conversation, rendered as core/generation.py's LocalChat renders it
        asked = tokenizer.apply_chat_template(conversation(normalise(example)), add_generation_prompt=True,
                                              return_dict=True)["input_ids"]
        assert list(asked) == ids[:start]


def test_train_sft_gives_chat_rows_to_trl_as_completions_without_markers(unmarked_model, tmp_path):
    from rung.core.settings import SFTSettings
    from rung.trainers.sft import train_sft

    rows = SQL_TRAIN.read_text().splitlines()[:12]
    data_file = tmp_path / "train.jsonl"
    data_file.write_text("\n".join(rows) + "\n")
    lines: list[str] = []
    settings = SFTSettings(model_name_or_path=str(unmarked_model), max_steps=1, eval_fraction=0.2, save_steps=1000,
                           max_length=256)
    summary = train_sft(settings, data_file, tmp_path / "out", echo=lines.append)
    assert summary["answers_only_as_completions"] and not summary["assistant_only_loss"]
    assert any(line.startswith("Loss: answer tokens only (chat rows as prompt/completion") for line in lines)
    held = [json.loads(line) for line in (tmp_path / "out" / "heldout.jsonl").read_text().splitlines()]
    assert held and all(row["messages"][0]["role"] == "system" for row in held), "held-out rows keep the schema"
