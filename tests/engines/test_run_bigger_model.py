"""The bigger-model engine: the catalog, the fit and cost arithmetic, and the side-by-side evaluation."""

from __future__ import annotations

import json

import pytest

from rung.engines import bigger_model as bm
from rung.core.protocol import StepContext

KEYS = {"id", "family", "params_b", "context", "licence", "kind", "layers", "hidden", "kv_heads", "head_dim", "vocab"}


def by_id(model_id: str) -> dict:
    return next(m for m in bm.load_catalog()["models"] if m["id"] == model_id)


def test_catalog_entries_are_complete_and_plausible():
    from rung.advisor.estimator import gpu_names

    catalog = bm.load_catalog()
    models = catalog["models"]
    assert len(models) >= 20 and len({m["id"] for m in models}) == len(models)
    for model in models:
        assert KEYS <= set(model), model["id"]
        assert set(model) <= KEYS | {"active_b"}, model["id"]
        assert model["kind"] in ("chat", "base") and model["context"] >= 4096
        assert model["id"].count("/") == 1
        # parameters are roughly what the shape implies: embeddings + 12·h² per layer, within a factor of 2.5
        # (Gemma 2 27B has an MLP 8x wider than hidden: 2.1x the rough count)
        rough = (model["vocab"] * model["hidden"] + 12 * model["layers"] * model["hidden"] ** 2) / 1e9
        if "active_b" not in model:
            assert 0.5 < model["params_b"] / rough < 2.5, model["id"]
    assert {m["kind"] for m in models} == {"chat", "base"}
    assert set(gpu_names()) <= set(catalog["gpus"]), "every GPU the estimator knows has a bandwidth"


def test_inference_memory_is_weights_plus_kv_cache_plus_overhead():
    llama8 = by_id("meta-llama/Llama-3.1-8B-Instruct")
    # KV: 2 x 32 layers x 8 heads x 128 dims x 2 bytes x 8192 tokens = 1.07 GB; weights 16.06 GB; +1.5 GB
    assert bm.kv_cache_gb(llama8, 8192) == pytest.approx(1.074, abs=0.001)
    assert bm.inference_gb(llama8, tokens=8192) == pytest.approx(16.06 + 1.074 + 1.5, abs=0.01)
    assert bm.inference_gb(llama8, tokens=8192, gpus=2) == pytest.approx((16.06 + 1.074) / 2 + 1.5, abs=0.01)
    assert bm.inference_gb(llama8, tokens=8192, bits=4) == pytest.approx(8.03 * 0.5625 + 1.074 + 1.5, abs=0.01)


def test_fit_on_one_24gb_gpu_and_cost_only_with_a_rate():
    hw = {"gpu": None, "memory_gb": 24.0, "gpus": 1, "like": "l4", "bandwidth_gbs": 300, "usd_per_gpu_hour": None}
    settings = bm.BiggerModelSettings(context_tokens=4096, batch=1)
    rows = {r["id"]: r for r in bm.rank(settings, hw)}
    assert rows["meta-llama/Llama-3.1-8B-Instruct"]["serve"] == "bf16"
    assert rows["meta-llama/Llama-3.1-8B-Instruct"]["train"] == "qlora"   # LoRA in BF16 needs ~28 GB
    assert rows["Qwen/Qwen2.5-32B-Instruct"]["serve"] == "4-bit"
    assert rows["meta-llama/Llama-3.3-70B-Instruct"]["serve"] == "no"
    assert rows["meta-llama/Llama-3.3-70B-Instruct"]["needs_gpu"] == "1 x mi300x"
    assert rows["meta-llama/Llama-3.1-405B-Instruct"]["needs_gpu"].endswith(("x mi300x", "x h200", "x b200"))
    assert all("usd_per_mtok" not in r for r in rows.values()), "no rate given, no cost"
    assert all(r["kind"] == "chat" for r in rows.values())

    priced = {r["id"]: r for r in bm.rank(settings, {**hw, "usd_per_gpu_hour": 0.71})}
    row = priced["meta-llama/Llama-3.1-8B-Instruct"]
    # memory-bound decode: 300 GB/s x 0.6 / (16.06 GB weights + 0.54 GB KV) = 10.8 tokens/s
    assert row["tokens_per_s"] == pytest.approx(300 * 0.6 / (16.06 + 0.537), rel=0.01)
    assert row["usd_per_mtok"] == pytest.approx(0.71 / (row["tokens_per_s"] * 3600) * 1e6, rel=0.01)


def test_filters_for_licence_kind_context_and_family():
    hw = {"gpu": None, "memory_gb": 80.0, "gpus": 1, "like": "a100-80gb", "bandwidth_gbs": 2039, "usd_per_gpu_hour": 1.79}
    rows = bm.rank(bm.BiggerModelSettings(licence="permissive", min_context=32768, families=["Qwen2.5"]), hw)
    assert rows and all(r["licence"] in ("apache-2.0", "mit") and r["context"] >= 32768 and r["family"] == "Qwen2.5"
                        for r in rows)
    assert {r["kind"] for r in bm.rank(bm.BiggerModelSettings(kind="base"), hw)} == {"base"}


@pytest.mark.slow
def test_engine_shortlists_and_compares_local_candidates_side_by_side(tmp_path, tiny_model_dir):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "other-model")
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"input": f"{i} + {i}?", "output": str(2 * i)}) + "\n"
                                                 for i in range(3)))
    plan = {"name": "math", "goal": "new_capability", "base_model": "builtin:tiny", "data": {"eval": "eval.jsonl"},
            "answers": {"gpu_memory_gb": 24, "gpu_count": 1}}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = StepContext(plan=plan, plan_dir=tmp_path, run_dir=run_dir)
    step = {"id": "bigger_model", "settings": {"candidates": [str(tmp_path / "other-model")], "max_new_tokens": 6,
                                               "gpu": "l4"}}
    result = bm.run_step(step, ctx)
    assert result.metrics["fit_to_serve"] > 0 and result.metrics["largest_servable"]
    assert set(result.metrics) >= {"builtin:tiny/exact_match", "other-model/exact_match", "best_candidate"}
    samples = (run_dir / "samples.md").read_text()
    assert "| input | expected | builtin:tiny | other-model |" in samples
    table = (run_dir / "candidates.md").read_text()
    assert "Fit on **1 x l4**" in table and "$ per M tokens" in table
    saved = json.loads((run_dir / "candidates.json").read_text())
    assert saved["hardware"]["usd_per_gpu_hour"] == 0.71  # the L4's list price in advisor/gpus.yaml
    assert any("usd_per_mtok" in m for m in saved["models"])
