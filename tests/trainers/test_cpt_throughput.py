"""Tokens/s and MFU: the GPU's peak from advisor/gpus.yaml by CUDA device name, FLOPs from the estimator."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("device_name, peak, table_name", [
    ("NVIDIA H200", 989.5, "h200"),
    ("NVIDIA H100 80GB HBM3", 989.5, "h100-sxm"),
    ("NVIDIA H100 PCIe", 756.0, "h100-pcie"),
    ("NVIDIA A100-SXM4-80GB", 312.0, "a100-80gb"),
])
def test_gpu_peak_from_cuda_device_name(device_name, peak, table_name):
    from rung.trainers.throughput import gpu_peak_tflops

    assert gpu_peak_tflops(device_name) == (peak, table_name)


def test_unknown_gpu_gives_no_mfu_and_says_why():
    from rung.trainers.throughput import gpu_peak_tflops

    value, why = gpu_peak_tflops("Quantum Abacus 9000")
    assert value is None and "not in advisor/gpus.yaml" in why


def test_mfu_arithmetic(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from rung.trainers.throughput import ThroughputCallback

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    n = sum(p.numel() for p in model.parameters())
    meter = ThroughputCallback(tokens_per_step=4096, model=model, adapter="full", world_size=2)
    assert meter.flops_per_token == pytest.approx(6 * n)  # the estimator's 6N for full training
    assert meter.mfu(1000.0) is None  # CPU: no peak
    meter.peak_tflops = 100.0
    # 50,000 tokens/s over 2 GPUs × 100 TFLOPS
    assert meter.mfu(50_000.0) == pytest.approx(50_000 * 6 * n / (2 * 100e12))
