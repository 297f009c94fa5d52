"""What users see of the band: `rung estimate --json` keys, `--explain`, `rung advise`, PLAN.md, the FLOPs terms,
and that the table is read only when an estimate is made."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rung.advisor.estimator import GATE_FEW_SHOT, GATE_NEW_TOKENS, GATE_ROWS, estimate

ESTIMATE = ("estimate", "--params-b", "7", "--tokens", "1B", "--gpu", "a100", "--gpus", "4", "--method", "full")
FINE_TUNING = """goal: domain_task
prompting_result: inconsistent
labeled_examples: 1000
gpu_memory_gb: 80
gpu_count: 1
base_model_params_b: 7
"""


def test_json_carries_the_band_and_the_references(rung):
    result = rung(*ESTIMATE, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["gpu_hours_low"] < data["gpu_hours"] < data["gpu_hours_high"]
    assert data["cost_usd_low"] < data["cost_usd"] < data["cost_usd_high"]
    assert data["mfu_low"] < data["mfu"] < data["mfu_high"] and data["mfu_source"] == "public runs"
    assert data["gpu_hours_high"] / data["gpu_hours_low"] == pytest.approx(data["mfu_high"] / data["mfu_low"])
    refs = data["references"]
    assert refs[0]["name"] == "Llama 2 7B" and refs[0]["gpu_hours"] == 184320 and "MODEL_CARD" in refs[0]["source"]
    assert {"name", "params_b", "tokens", "gpu", "gpu_hours", "mfu", "source", "where"} <= set(refs[0])
    assert data["efficiency"]["basis"] == "the 4 nearest in size of 13 public ampere runs"


def test_a_given_mfu_prices_the_point_and_keeps_the_public_band(rung):
    fitted = json.loads(rung(*ESTIMATE, "--json").stdout)
    given = json.loads(rung(*ESTIMATE, "--mfu", "0.9", "--json").stdout)
    assert given["mfu"] == 0.9 and given["mfu_source"] == "given"
    assert (given["gpu_hours_low"], given["gpu_hours_high"]) == (fitted["gpu_hours_low"], fitted["gpu_hours_high"])
    text = rung(*ESTIMATE, "--mfu", "0.9").output
    assert "MFU 90% is outside what comparable public runs achieved" in text


def test_text_shows_the_band_and_the_runs_it_is_like(rung):
    text = rung(*ESTIMATE).output
    data = json.loads(rung(*ESTIMATE, "--json").stdout)
    assert f"GPU-hours    {data['gpu_hours']:,.1f} (band {data['gpu_hours_low']:,.1f}-{data['gpu_hours_high']:,.0f})" in text
    assert "like         Llama 2 7B: 184K a100-80gb-hours for 2T tokens (MFU 41%, 127 TFLOP/s)" in text
    assert "the 4 nearest in size of 13 public ampere runs" in text


def test_explain_substitutes_the_numbers_term_by_term(rung):
    text = rung(*ESTIMATE, "--explain").output
    data = json.loads(rung(*ESTIMATE, "--json").stdout)
    for line in ("forward (2N)                         = 1.400e+10  (33.3%)",
                 "backward, weight gradients (2N)      = 1.400e+10  (33.3%)",
                 "total                                = 4.200e+10 per token",
                 "FLOPs = 4.200e+10 per token x 1.000e+09 tokens = 4.200e+19",
                 "Llama 2 7B: 6 x 7.000e+09 x 2.000e+12 / (184,320 GPU-hours x 3600 x 3.120e+14) = 0.406",
                 "(0.406 x 0.434 x 0.514 x 0.377) ^ (1/4) = 0.430",
                 f"point = 4.200e+19 / (3.120e+14 x 0.430) / 3600 = {data['gpu_hours']:,.1f}",
                 f"high  = 4.200e+19 / (3.120e+14 x {data['mfu_low']:.3f}) / 3600 = {data['gpu_hours_high']:,.1f}",
                 "t = 3.055, Student's two-sided 99% quantile with 12 degrees of freedom",
                 "wall-clock = GPU-hours / 4 GPUs"):
        assert line in text, f"{line!r} not in:\n{text}"


def test_flops_terms_name_what_dominates():
    lora = estimate(params_b=7, tokens=1e9, gpu="a100", method="lora")
    names = [term["term"] for term in lora["flops_terms"]]
    assert names[:2] == ["forward (2N)", "backward, activation gradients (2N)"] and "weight gradients" not in str(names)
    assert sum(term["share"] for term in lora["flops_terms"]) == pytest.approx(1)
    dpo = estimate(params_b=7, tokens=1e9, gpu="a100", method="dpo", gradient_checkpointing=True)
    assert {"reference model forward (2N)", "recompute, gradient checkpointing (2N)"} <= \
        {term["term"] for term in dpo["flops_terms"]}


def test_gate_constants_match_the_gate_settings():
    from rung.core.settings import GateSettings

    gate = GateSettings()
    assert (GATE_ROWS, GATE_NEW_TOKENS, GATE_FEW_SHOT) == (gate.max_rows, gate.max_new_tokens, gate.num_examples)


def test_advise_and_plan_md_show_the_band(rung, tmp_path):
    answers = tmp_path / "answers.yaml"
    answers.write_text(FINE_TUNING)
    advice = json.loads(rung("advise", "--answers", answers, "--json").stdout)["estimate"]
    assert advice["gpu_hours_low"] < advice["gpu_hours"] < advice["gpu_hours_high"]
    assert advice["flops_terms"][0]["term"] == "sft: forward (2N)"
    assert any(term["term"].startswith("gate: generation") for term in advice["flops_terms"])
    text = rung("advise", "--answers", answers).output
    shown = (f"GPU-hours        {advice['gpu_hours']:.2g} (band {advice['gpu_hours_low']:.2g}-"
             f"{advice['gpu_hours_high']:.2g}) at 43% MFU (band 20%-66%)")
    assert shown == "GPU-hours        0.09 (band 0.059-0.19) at 43% MFU (band 20%-66%)"
    assert shown in text
    assert "like             Llama 2 7B: 184K a100-80gb-hours" in text
    result = rung("plan", "--answers", answers, "--out", tmp_path / "plan")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "plan" / "PLAN.md").read_text()
    assert shown in md
    assert "The GPU-hours are a range, not a promise." in md
    assert "| sft: forward (2N) |" in md and "| gate: generation, 2 models x 50 rows" in md


def test_the_table_is_read_only_when_an_estimate_is_made(tmp_path):
    """`rung advise` start-up: importing the CLI and the advisor's commands reads no public-runs table."""
    code = ("import sys; import rung.cli.main, rung.cli.advise, rung.advisor.estimator; "
            "print('rung.advisor.public_runs' in sys.modules, 'rung.advisor.efficiency' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
