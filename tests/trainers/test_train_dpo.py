"""SFT then DPO through the engine entries (`run_step`, as `rung run` calls them) on builtin:tiny: DPO raises the
reward margin and chosen-over-rejected accuracy on its training pairs; starting from the SFT adapter, the
reference is that SFT adapter and the output is one PEFT adapter on the original base."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rung.core.protocol import StepContext

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_sft_then_dpo_engines_raise_margin_and_accuracy(tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rung.engines import dpo, sft
    from rung.core.models import builtin_tiny_path

    sft_rows = (EXAMPLES / "preferences" / "data" / "train.jsonl").read_text().splitlines()[:8]
    (tmp_path / "sft.jsonl").write_text("\n".join(sft_rows) + "\n")
    pairs = (EXAMPLES / "preferences" / "data" / "pairs.jsonl").read_text().splitlines()[:16]
    (tmp_path / "pairs.jsonl").write_text("\n".join(pairs) + "\n")
    plan = {"version": 1, "name": "t", "route": "fine_tuning", "method": "sft_then_dpo", "adapter": "lora",
            "base_model": "builtin:tiny", "data": {"train": "sft.jsonl", "preferences": "pairs.jsonl"},
            "steps": [{"id": "sft", "engine": "sft", "settings": {"max_steps": 5, "learning_rate": 2e-3,
                                                                "eval_fraction": 0}},
                      {"id": "dpo", "engine": "dpo", "from_step": "sft",
                       "settings": {"max_steps": 12, "learning_rate": 1e-2, "lora_dropout": 0.0}}]}
    outputs = {}
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "run" / "sft", outputs=outputs)
    ctx.run_dir.mkdir(parents=True)
    first = sft.run_step(plan["steps"][0], ctx)
    assert first.outputs["model_dir"] == str(ctx.run_dir) and first.metrics["global_step"] == 5
    outputs["sft"] = first.outputs

    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=tmp_path / "run" / "dpo", outputs=outputs,
                      cli_settings={"learning_rate": 2e-3, "eval_fraction": 0.0, "save_steps": 1000,
                                    "logging_steps": 4})  # command-line overrides win over the plan
    ctx.run_dir.mkdir(parents=True)
    result = dpo.run_step(plan["steps"][1], ctx)
    printed = capsys.readouterr().out
    # a `rung run` step names its resolved config in one line (the run printed the settings once already)
    assert f"Resolved config saved to {ctx.run_dir / 'resolved_config.yaml'}" in printed
    assert "learning_rate: 0.002" not in printed
    resolved = yaml.safe_load((ctx.run_dir / "resolved_config.yaml").read_text())["settings"]
    assert resolved["learning_rate"] == 0.002 and resolved["model_name_or_path"] == str(tmp_path / "run" / "sft")
    assert "reference = a frozen copy of it" in printed
    assert result.metrics["global_step"] == 12

    import json

    metrics = json.loads((ctx.run_dir / "metrics.json").read_text())
    before, after = metrics["pairs_before"], metrics["pairs_after"]
    assert before["reward_margin"] == pytest.approx(0.0, abs=1e-3)  # policy == reference at the start
    assert after["reward_margin"] > before["reward_margin"] + 0.1
    assert after["accuracy"] >= 0.8 > before["accuracy"]

    out = ctx.run_dir
    assert (out / "adapter_model.safetensors").exists() and not (out / "ref").exists()
    for name in ("resolved_config.yaml", "metrics.json", "loss.png", "samples.md", "tokenizer.json"):
        assert (out / name).exists(), name
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(builtin_tiny_path()), out)
    assert list(model.peft_config) == ["default"]
