"""CPT on a CUDA GPU: bf16 autocast, SDPA, gradient checkpointing, MFU reported. Skipped without a GPU
(CI runs `-m "not gpu"`); run on a device with `pytest tests/trainers/test_cpt_gpu.py -m gpu`."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "domain_corpus" / "corpus"


def test_cpt_on_one_gpu_uses_bf16_and_reports_mfu(tmp_path, tiny_model_dir):
    from rung.trainers.cpt import train_cpt
    from rung.core.settings import CPTSettings

    settings = CPTSettings(model_name_or_path=str(tiny_model_dir), max_length=256, per_device_train_batch_size=16,
                           max_steps=30, eval_steps=15, save_steps=15, logging_steps=5, learning_rate=2e-3)
    result = train_cpt(settings, [EXAMPLE], tmp_path / "gpu")
    assert result["final_loss"] < result["first_loss"]
    from rung.trainers.cpt import training_arguments

    args = training_arguments(settings, tmp_path / "args", max_steps=1, on_gpu=True)
    assert args.bf16 and args.gradient_checkpointing and not args.use_cpu  # the GPU defaults
    throughput = result["throughput"]
    assert throughput["tokens_per_second"] > 0
    if throughput["peak_bf16_tflops"]:  # a GPU advisor/gpus.yaml knows
        assert 0 < throughput["mfu"] < 1


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_cpt_on_two_gpus_through_accelerate(tmp_path, tiny_model_dir):
    from rung.core.settings import CPTSettings
    from rung.trainers.cpt import cpt_job
    from rung.trainers.launch import launch

    settings = CPTSettings(model_name_or_path=str(tiny_model_dir), max_length=256, per_device_train_batch_size=8,
                           max_steps=20, eval_steps=10, save_steps=10, logging_steps=5, learning_rate=2e-3)
    result = launch("cpt", settings, tmp_path / "ddp", job=cpt_job(settings, [EXAMPLE]), gpus=2, strategy="ddp",
                    main_port=0, echo=lambda line: None)
    assert result["returncode"] == 0 and (tmp_path / "ddp" / "model" / "model.safetensors").exists()
