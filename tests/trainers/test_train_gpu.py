"""QLoRA SFT on CUDA (bitsandbytes 4-bit): skipped on machines without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_qlora_sft_trains_a_4bit_base_and_saves_a_peft_adapter(tmp_path):
    pytest.importorskip("bitsandbytes")
    from rung.core.settings import SFTSettings
    from rung.trainers.sft import train_sft

    rows = (EXAMPLES / "sql_assistant/data/train.jsonl").read_text().splitlines()[:16]
    (tmp_path / "t.jsonl").write_text("\n".join(rows) + "\n")
    lines: list[str] = []
    summary = train_sft(SFTSettings(adapter="qlora", max_steps=10, learning_rate=2e-3, eval_fraction=0,
                                    save_steps=1000), tmp_path / "t.jsonl", tmp_path / "out", echo=lines.append)
    assert summary["final_loss"] < summary["first_loss"]
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
    # the base was really loaded in 4 bits: every linear layer of builtin:tiny's decoder is a Linear4bit
    # (7 per layer x 4 layers; lm_head stays in bf16), and only the LoRA weights trained
    assert summary["base_4bit_linears"] == 28
    assert summary["trainable_params"] < 0.1 * summary["total_params"]
