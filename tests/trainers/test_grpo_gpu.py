"""GRPO with TRL's vLLM generation (`--use-vllm`, colocated) on CUDA: skipped without a GPU or without vllm.
Not run on the CPU machines this project is developed on; written to be run on a GPU machine with vllm installed."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_grpo_generates_with_vllm_and_trains(tmp_path, tiny_model_dir):
    pytest.importorskip("vllm")
    from rung.core.settings import GRPOSettings
    from rung.engines.grpo import reward_for
    from rung.trainers.grpo import train_grpo

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Question {i}"}]}) + "\n"
                               for i in range(8)))
    summary = train_grpo(GRPOSettings(model_name_or_path=str(tiny_model_dir), use_vllm=True, max_steps=3,
                                      num_generations=4, per_device_train_batch_size=8, max_completion_length=8,
                                      eval_fraction=0, logging_steps=1, save_steps=1000,
                                      metric="regex", metric_options={"pattern": "^[a-h]"}),
                         prompts, tmp_path / "out", score=reward_for("regex", {"pattern": "^[a-h]"}), metric="regex")
    assert summary["global_step"] == 3 and summary["final_reward"] is not None
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()
