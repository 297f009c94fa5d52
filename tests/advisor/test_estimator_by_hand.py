"""The estimator's figures, computed by hand here from the model shape, the token count, the GPU's datasheet peak
(advisor/gpus.yaml) and the published constants, each written as a literal (none read from the code). The
calibration tests in test_advisor_estimator.py allow +-25% against published budgets; these allow rounding only,
so a changed MFU, byte count or overhead fails them.

The assumptions, as advisor/estimate_math.py's docstring states them:
- time: FLOPs / (peak dense BF16 FLOP/s x MFU); full training 6N FLOPs per token, LoRA 4N + 6 x adapter. The MFU is
  given (--mfu 0.40, the estimator's fixed value until the public-runs fit) or fitted: the geometric mean of the MFU
  of the 4 public runs of the GPU's generation nearest in size (advisor/efficiency.py), recomputed here from the
  runs' published figures;
- memory: weights 2 bytes/param (QLoRA 4.127 bits), full gradients 2 and AdamW 4 bytes/param, LoRA adapters
  4 + 4 + 8 bytes/param; activations 34 s b h bytes per layer (2 s b h per layer + one layer's 34 with
  checkpointing); FP32 logits s b V 4; 1.5 GB overhead; LoRA on all linear layers = 18 h r per layer, r = 16.
"""

from __future__ import annotations

import json
import math

import pytest

from rung.advisor.answers import validate_answers
from rung.advisor.estimator import ModelShape, estimate, memory_breakdown, memory_gb
from rung.advisor.rulebook import RULES_ENV
from rung.advisor.rules import advise

# A Mistral-7B-like shape, written out: 7e9 parameters, 32 layers, hidden 4096, vocabulary 32,768.
N, LAYERS, HIDDEN, VOCAB = 7e9, 32, 4096, 32768
SHAPE = ModelShape(7.0, LAYERS, HIDDEN, VOCAB, "given")
A100_PEAK = 312e12      # advisor/gpus.yaml a100-80gb: NVIDIA A100 datasheet, BF16 dense
A100_USD = 1.79
MFU = 0.40              # a given MFU (--mfu 0.40)
# The 4 A100 runs nearest to 7B in log(parameters), from advisor/public_runs.yaml's sources:
# (parameters, tokens, published GPU-hours): Llama 2 7B, LLaMA 7B, LLaMA 13B, Llama 2 13B
NEAREST_A100_RUNS = [(7e9, 2e12, 184320), (6.7e9, 1e12, 82432), (13e9, 1e12, 135168), (13e9, 2e12, 368640)]
LORA = 18 * HIDDEN * 16 * LAYERS  # 37,748,736 adapter parameters
GB = 1e9


def fitted_a100_mfu() -> float:
    """MFU = 6 N D / (GPU-hours x 3600 x peak) for each of the 4 nearest runs, then their geometric mean."""
    mfus = [6 * n * d / (hours * 3600 * A100_PEAK) for n, d, hours in NEAREST_A100_RUNS]
    return math.prod(mfus) ** (1 / len(mfus))  # 0.4297


def test_full_fine_tuning_gpu_hours_by_hand_with_a_given_mfu():
    tokens = 1e9
    expected = 6 * N * tokens / (A100_PEAK * MFU) / 3600  # 93.48 GPU-hours
    result = estimate(shape=SHAPE, tokens=tokens, gpu="a100-80gb", gpus=4, method="full", mfu=MFU)
    assert result["flops"] == pytest.approx(6 * N * tokens, rel=1e-12)
    assert result["gpu_hours"] == pytest.approx(expected, rel=1e-9)
    assert result["gpu_hours"] == pytest.approx(93.4829, abs=1e-4)
    assert result["wall_hours"] == pytest.approx(expected / 4, rel=1e-9)
    assert result["cost_usd"] == pytest.approx(expected * A100_USD, rel=1e-9)
    assert (result["mfu"], result["mfu_source"]) == (MFU, "given")


def test_full_fine_tuning_gpu_hours_by_hand_with_the_fitted_mfu():
    """Same run, MFU from the public runs: the formula is unchanged, the efficiency is the 4 nearest A100 runs'."""
    tokens = 1e9
    mfu = fitted_a100_mfu()
    assert mfu == pytest.approx(0.4297, abs=1e-4)
    expected = 6 * N * tokens / (A100_PEAK * mfu) / 3600  # 87.02 GPU-hours, down from 93.48 at MFU 0.40
    result = estimate(shape=SHAPE, tokens=tokens, gpu="a100-80gb", gpus=4, method="full")
    assert result["mfu"] == pytest.approx(mfu, rel=1e-12)
    assert result["gpu_hours"] == pytest.approx(expected, rel=1e-9)
    assert result["gpu_hours"] == pytest.approx(87.0170, abs=1e-4)
    assert result["gpu_hours_low"] < result["gpu_hours"] < result["gpu_hours_high"]
    assert [ref["name"] for ref in result["references"]] == ["Llama 2 7B", "LLaMA 7B", "LLaMA 13B", "Llama 2 13B"]


def test_lora_gpu_hours_by_hand_on_an_h100():
    tokens = 2e8
    expected = (4 * N + 6 * LORA) * tokens / (989.5e12 * MFU) / 3600  # h100-sxm: 1,979 sparse / 2
    result = estimate(shape=SHAPE, tokens=tokens, gpu="h100", method="lora", mfu=MFU)
    assert result["gpu_hours"] == pytest.approx(expected, rel=1e-9)
    assert result["cost_usd"] == pytest.approx(expected * 2.99, rel=1e-9)


def test_the_estimate_command_prices_like_the_function(rung):
    """`rung estimate` and estimate() price the same run the same way, fitted or with --mfu."""
    result = rung("estimate", "--params-b", "7", "--tokens", "1B", "--gpu", "a100", "--method", "full", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gpu_hours"] == pytest.approx(6 * N * 1e9 / (A100_PEAK * fitted_a100_mfu()) / 3600, rel=1e-9)
    given = rung("estimate", "--params-b", "7", "--tokens", "1B", "--gpu", "a100", "--method", "full", "--mfu", "0.4",
                 "--json")
    assert json.loads(given.stdout)["gpu_hours"] == pytest.approx(93.4829, abs=1e-4)


def test_the_advisors_route_estimate_by_hand(monkeypatch):
    """`rung advise` for 1,000 examples on one 80 GB GPU: 512 tokens per example x 3 SFT epochs, LoRA, priced on
    the cheapest 80 GB GPU in the table (a100-80gb), at micro-batch 8 without checkpointing (it fits)."""
    monkeypatch.delenv(RULES_ENV, raising=False)
    answers, problems = validate_answers({"goal": "domain_task", "prompting_result": "inconsistent",
                                          "labeled_examples": 1000, "gpu_memory_gb": 80, "gpu_count": 1,
                                          "base_model_params_b": 7})
    assert not problems
    result = advise(answers)
    assert (result["route"], result["method"], result["adapter"]) == ("fine_tuning", "sft", "lora")
    est = result["estimate"]
    assert (est["gpu"], est["micro_batch"], est["gradient_checkpointing"]) == ("a100-80gb", 8, False)
    tokens = 1000 * 512 * 3
    mfu = fitted_a100_mfu()
    expected = (4 * N + 6 * LORA) * tokens / (A100_PEAK * mfu) / 3600
    assert est["training_tokens"] == tokens
    assert est["gpu_hours"] == pytest.approx(expected, rel=1e-9)
    assert est["cost_usd"] == pytest.approx(expected * A100_USD, rel=1e-9)
    assert est["mfu"] == pytest.approx(mfu, rel=1e-12)
    assert any(line.startswith("MFU 43% (band ") and "of a100-80gb's 312 dense BF16 TFLOPS, the 4 nearest in size of "
               "13 public ampere runs, like Llama 2 7B: 184K a100-80gb-hours for 2T tokens" in line
               and line.endswith("$1.79 per GPU-hour") for line in est["assumptions"])


SEQ = 1024
SBH = SEQ * 1 * HIDDEN          # micro-batch 1
LOGITS = SEQ * 1 * VOCAB * 4    # FP32 logits


def by_hand_full() -> dict[str, float]:
    return {"weights": 2 * N, "reference_model": 0, "gradients": 2 * N, "optimizer": 4 * N,
            "activations": 34 * SBH * LAYERS, "logits": LOGITS}


def by_hand_lora_checkpointed() -> dict[str, float]:
    return {"weights": 2 * N + 4 * LORA, "reference_model": 0, "gradients": 4 * LORA, "optimizer": 8 * LORA,
            "activations": 2 * SBH * LAYERS + 34 * SBH, "logits": LOGITS}


def by_hand_qlora() -> dict[str, float]:
    embeddings = VOCAB * HIDDEN * 2  # input embeddings + LM head stay 16-bit
    return {"weights": (N - embeddings) * 4.127 / 8 + embeddings * 2 + 4 * LORA, "reference_model": 0,
            "gradients": 4 * LORA, "optimizer": 8 * LORA, "activations": 34 * SBH * LAYERS, "logits": LOGITS}


def by_hand_full_dpo() -> dict[str, float]:  # a frozen reference copy; chosen + rejected: two sequences per pair
    return {"weights": 2 * N, "reference_model": 2 * N, "gradients": 2 * N, "optimizer": 4 * N,
            "activations": 34 * 2 * SBH * LAYERS, "logits": 2 * LOGITS}


@pytest.mark.parametrize("method, adapter, checkpointing, by_hand, total_gb", [
    ("full", None, False, by_hand_full, 62.20),
    ("lora", None, True, by_hand_lora_checkpointed, 16.65),
    ("qlora", None, False, by_hand_qlora, 10.81),
    ("dpo", "full", False, by_hand_full_dpo, 80.89),
], ids=["full", "lora-checkpointed", "qlora", "dpo-full"])
def test_memory_by_hand(method, adapter, checkpointing, by_hand, total_gb):
    parts = memory_breakdown(SHAPE, method, adapter, seq_len=SEQ, micro_batch=1,
                             gradient_checkpointing=checkpointing)
    expected = {name: value / GB for name, value in by_hand().items()} | {"overhead": 1.5}
    assert parts == pytest.approx(expected, abs=1e-3)
    total = memory_gb(SHAPE, method, adapter, seq_len=SEQ, micro_batch=1, gradient_checkpointing=checkpointing)
    assert total == pytest.approx(sum(expected.values()), abs=0.01)
    assert total == pytest.approx(total_gb, abs=0.01)


def test_full_training_shards_weights_gradients_and_optimizer_only():
    """ZeRO-3 over 8 GPUs divides the per-parameter bytes by 8; activations, logits and overhead stay per GPU."""
    parts = memory_breakdown(SHAPE, "full", seq_len=SEQ, micro_batch=1, gpus=8)
    full = by_hand_full()
    assert parts["weights"] == pytest.approx(2 * N / 8 / GB, abs=1e-3)
    assert parts["optimizer"] == pytest.approx(4 * N / 8 / GB, abs=1e-3)
    assert parts["activations"] == pytest.approx(full["activations"] / GB, abs=1e-3)
    assert parts["overhead"] == 1.5
