"""`rung train` settings and refusals that need no training: precedence, did-you-mean, QLoRA on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rung.cli.train import resolve_training
from rung.core.settings import DPOSettings, SFTSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATA = EXAMPLES / "sql_assistant" / "data" / "train.jsonl"


def test_precedence_default_then_config_then_flags_then_set(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"learning_rate": 1e-3, "lora_r": 8, "packing": True, "max_steps": 7}))
    settings = resolve_training(SFTSettings, "sft", config, ("max_steps=9", "lr_scheduler_type=linear",
                                                     "warmup_ratio=1e-2"),
                         {"learning_rate": 3e-4, "lora_r": None, "packing": None})
    assert settings.learning_rate == 3e-4          # flag beats config
    assert settings.lora_r == 8                    # config beats default
    assert settings.packing is True
    assert settings.max_steps == 9                 # --set beats config
    assert settings.lr_scheduler_type == "linear" and settings.warmup_ratio == 0.01
    assert settings.lora_alpha == SFTSettings().lora_alpha  # default


def test_config_may_be_a_plan_yaml(tmp_path):
    plan = {"version": 1, "name": "x", "route": "fine_tuning", "method": "sft_then_dpo", "adapter": "lora",
            "base_model": "builtin:tiny",
            "steps": [{"id": "sft", "engine": "sft", "settings": {"num_train_epochs": 2}},
                      {"id": "dpo", "engine": "dpo", "from_step": "sft", "settings": {"beta": 0.2}}]}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    assert resolve_training(SFTSettings, "sft", path, (), {}).num_train_epochs == 2
    dpo = resolve_training(DPOSettings, "dpo", path, (), {})
    assert dpo.beta == 0.2 and dpo.model_name_or_path == "builtin:tiny"


def test_unknown_setting_fails_with_did_you_mean(rung, tmp_path):
    result = rung("train", "sft", "--data", DATA, "--out", tmp_path / "o", "--set", "learning_rte=1e-4")
    assert result.exit_code == 2
    assert 'unknown setting "learning_rte" (did you mean "learning_rate"?)' in result.output
    assert not (tmp_path / "o").exists()


def test_qlora_on_cpu_fails_with_one_clear_line(rung, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = rung("train", "sft", "--data", DATA, "--out", tmp_path / "o", "--adapter", "qlora")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == ["Error: --adapter qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine has none: "
                      "use --adapter lora on CPU"]
    assert "Traceback" not in result.output


def test_bad_data_stops_before_any_model_loads(rung, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "q"}]}\n{"prompt": 1}\n')
    result = rung("train", "dpo", "--data", bad, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert f'{bad}:1: missing key "prompt"' in result.output
    assert f'{bad}:2: missing key "chosen"' in result.output


def test_end_of_turn_token_becomes_eos_when_the_template_ends_turns_otherwise(tiny_model_dir):
    """TRL adds EOS only to text rows; for chat rows the template decides. A tokenizer whose EOS is not the
    token that ends assistant turns (a Qwen-base-like setup) gets that token as EOS."""
    from rung.trainers.common import end_of_turn_token
    from rung.core.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    token, note = end_of_turn_token(tokenizer)
    assert token == "<|im_end|>" == tokenizer.eos_token and "(the EOS token)" in note
    tokenizer.eos_token = "<|endoftext|>"
    token, note = end_of_turn_token(tokenizer)
    assert token == "<|im_end|>" and "not the EOS <|endoftext|>" in note
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    token, note = end_of_turn_token(tokenizer)
    assert token is None and "may not learn to stop" in note


def test_memory_check_stops_with_what_to_change():
    from rung.core.errors import RungError
    from rung.trainers.device import Device, memory_check

    settings = SFTSettings(adapter="full", per_device_train_batch_size=1)
    device = Device("cuda", "NVIDIA L4", free_gb=20.0, total_gb=24.0, count=1, bf16=True)
    with pytest.raises(RungError) as error:
        memory_check("meta-llama/Llama-3.1-8B", settings, method="sft", tokens=1e6, seq_len=512, device=device,
                     echo=lambda _: None)
    message = str(error.value)
    assert message.startswith("not enough memory: the estimate is") and "20.0 GB free" in message
    assert "QLoRA" in message
    lines: list[str] = []
    fits = memory_check("builtin:tiny", SFTSettings(), method="sft", tokens=1000, seq_len=256, device=device,
                        echo=lines.append)
    assert fits["estimate_gb"] < 20 and lines[0].startswith("Memory: this run needs about")
