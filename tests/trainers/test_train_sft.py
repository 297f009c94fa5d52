"""LoRA SFT on builtin:tiny (CPU, offline): the adapter trains, the base does not; the model memorises a tiny
set, answers a training question greedily and then STOPS (EOS learned); merge matches base+adapter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rung.core.settings import SFTSettings

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N_ROWS = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """One LoRA SFT run shared by the tests below: 4 SQL rows, 60 steps of 4 (= 60 epochs)."""
    from rung.trainers.sft import train_sft

    root = tmp_path_factory.mktemp("sft")
    rows = (EXAMPLES / "sql_assistant" / "data" / "train.jsonl").read_text().splitlines()[:N_ROWS]
    data_file = root / "train.jsonl"
    data_file.write_text("\n".join(rows) + "\n")
    base_hash = hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()
    settings = SFTSettings(max_steps=60, learning_rate=5e-3, lr_scheduler_type="constant", warmup_ratio=0.0,
                           logging_steps=5, save_steps=1000, eval_fraction=0.0, lora_dropout=0.0)
    lines: list[str] = []
    summary = train_sft(settings, data_file, root / "out", echo=lines.append)
    return {"out": root / "out", "summary": summary, "rows": [json.loads(r) for r in rows], "lines": lines,
            "base_hash": base_hash, "settings": settings}


def test_outputs_are_all_there_and_in_peft_format(trained):
    out = trained["out"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "resolved_config.yaml",
                 "metrics.json", "loss.png", "samples.md"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # no pickles beside the outputs
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = (out / "samples.md").read_text()
    assert samples.count("- before:") == 3 and samples.count("- after:") == 3
    text = "\n".join(trained["lines"])
    assert "Resolved config" in text and "Memory: this run needs about" in text
    assert "assistant tokens only" in text  # builtin:tiny's template has {% generation %} markers


def test_the_model_card_says_what_the_run_was(trained):
    """README.md is rung's card, not PEFT's blank template: base, data with its row count, results, settings."""
    card = (trained["out"] / "README.md").read_text()
    summary = trained["summary"]
    assert "base_model: builtin:tiny" in card and "# out: SFT (lora) of builtin:tiny" in card
    assert f"train.jsonl` ({N_ROWS} rows)" in card
    assert f"| final train loss | {round(summary['final_loss'], 4)} |" in card
    assert f"| optimizer steps | {summary['global_step']} |" in card
    assert "learning_rate: 0.005" in card and "max_steps: 60" in card
    assert "[More Information Needed]" not in card  # PEFT's template text


def test_adapter_weights_change_and_base_weights_do_not(trained, tiny_model_dir):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, set_seed

    assert hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest() == trained["base_hash"]
    saved = load_file(str(trained["out"] / "adapter_model.safetensors"))
    s = trained["settings"]
    set_seed(s.seed)  # TRL seeds before creating the adapter: the same init as the run's
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, target_modules="all-linear",
                                      lora_dropout=0.0, task_type="CAUSAL_LM"))
    init = {k.replace(".default", ""): v for k, v in fresh.state_dict().items() if "lora_" in k}
    assert len(saved) == len(init) == 4 * 7 * 2  # 4 layers x 7 linear layers x (A, B)
    for name, tensor in saved.items():
        assert not torch.equal(tensor, init[name]), f"{name} did not change"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), trained["out"])
    for name, param in base.named_parameters():
        peft_name = "base_model.model." + name
        if "proj" in name:
            peft_name = peft_name.replace(".weight", ".base_layer.weight")
        assert torch.equal(param, loaded.get_parameter(peft_name)), name


def test_loss_falls_and_the_model_answers_a_training_question_then_stops(trained):
    from rung.core.models import load_for_inference
    from rung.trainers.generate import generate

    summary = trained["summary"]
    assert summary["final_loss"] < summary["first_loss"] - 1.0
    assert summary["steps_this_run"] == summary["global_step"] == 60
    model, tokenizer = load_for_inference(str(trained["out"]))
    import torch

    for row in trained["rows"][:2]:
        prompt, answer = row["messages"][:-1], row["messages"][-1]["content"]
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            output = model.generate(input_ids=ids, max_new_tokens=80, do_sample=False,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = output[0, ids.shape[1]:].tolist()
        assert tokenizer.decode(new, skip_special_tokens=True).strip() == answer
        assert new[-1] == tokenizer.eos_token_id and len(new) < 80  # it stopped by itself
        assert generate(model, tokenizer, prompt, max_new_tokens=80) == answer


def test_merged_model_matches_base_plus_adapter(trained, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from rung.core.models import load_for_inference
    from rung.trainers.merge import merge_adapter

    merged_dir = merge_adapter(trained["out"], tmp_path / "merged", echo=lambda _: None)
    assert (merged_dir / "model.safetensors").exists() and (merged_dir / "tokenizer.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)  # AutoModelForCausalLM alone
    adapted, tokenizer = load_for_inference(str(trained["out"]))
    ids = tokenizer.apply_chat_template(trained["rows"][0]["messages"], return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        a, b = merged(input_ids=ids).logits, adapted(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_generate_and_chat_commands_use_the_adapter(rung, trained):
    row = trained["rows"][0]
    answer = row["messages"][-1]["content"]
    system, question = row["messages"][0]["content"], row["messages"][1]["content"]
    result = rung("generate", trained["out"], "--prompt", question, "--system", system, "--max-new-tokens", "80")
    assert result.exit_code == 0 and result.output.strip().splitlines()[-1] == answer
    result = rung("chat", trained["out"], "--system", system, "--max-new-tokens", "80", input=f"{question}\n/quit\n")
    assert result.exit_code == 0 and f"model> {answer}" in result.output
