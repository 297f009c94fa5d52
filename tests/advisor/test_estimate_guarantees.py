"""The estimator's arithmetic and its choices (advisor/estimate_math.py, advisor/estimator.py), stated as guarantees
on small shapes whose counts are worked out by hand here: a config's parameter count, term by term, for each naming
scheme and architecture family; a size read from a model's name; the counts people type; the GPU picked for a
memory size; the fastest setup that fits."""

from __future__ import annotations

import pytest

from rung.advisor import estimate_math
from rung.advisor.estimate_math import (ModelShape, flops_terms, memory_gb, model_type_ties, params_from_config,
                                        params_from_name, parse_count)
from rung.advisor.estimator import (_kind_for, cheapest_gpu_that_fits, gpu_for_memory, largest_fitting_batch)

# --------------------------------------------------------------------------------------- parameters from config.json
# A tiny decoder: hidden h = 8, 2 layers, vocabulary 10, 2 query heads, 1 key/value head of 4, MLP 16.
#   attention = q (h x heads*hd = 64) + k and v (2 x h x kv*hd = 64) + o (heads*hd x h = 64) = 192
#   gated MLP (gate, up, down) = 3 x 8 x 16 = 384; a plain MLP (up, down) = 2 x 8 x 16 = 256
#   per layer = attention + MLP + 2 norms of h (16); untied embeddings = 2 x 10 x 8 = 160, tied 80; final norm 8
LLAMA = {"hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 10, "num_attention_heads": 2,
         "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 16, "model_type": "llama",
         "tie_word_embeddings": False}


def count(config: dict, total: bool = False) -> float:
    return round(params_from_config(config, total=total) * 1e9, 6)


def test_a_gated_decoders_parameters_term_by_term():
    assert count(LLAMA) == 160 + 2 * (192 + 384 + 16) + 8 == 1352
    assert count({**LLAMA, "tie_word_embeddings": True}) == 1352 - 80


@pytest.mark.parametrize("model_type", ["gpt_neox", "gptj", "opt", "bloom", "falcon", "Falcon"])
def test_these_families_have_a_plain_two_matrix_mlp(model_type):
    assert count({**LLAMA, "model_type": model_type}) == 1352 - 2 * 128


def test_gpt2_names_its_sizes_its_own_way_ties_its_embeddings_and_has_a_plain_mlp():
    gpt2 = {"n_embd": 8, "n_layer": 2, "vocab_size": 10, "n_head": 2, "n_inner": 16, "model_type": "gpt2",
            "activation_function": "gelu_new"}
    # heads 2, key/value heads = heads, head_dim = 8 // 2 = 4: attention 64 + 2 x 8 x 2 x 4 + 64 = 256
    assert count(gpt2) == 80 + 2 * (256 + 256 + 16) + 8 == 1144
    assert count({**gpt2, "model_type": "GPT2"}) == 1144
    assert count({**gpt2, "tie_word_embeddings": False}) == 1144 + 80


def test_gelu_new_means_a_plain_mlp_whichever_key_says_it():
    plain = {**LLAMA, "model_type": "mystery"}
    assert count({**plain, "hidden_act": "gelu_new"}) == 1352 - 256
    assert count({**plain, "activation_function": "gelu_new"}) == 1352 - 256
    assert count({**plain, "hidden_act": "silu", "activation_function": "gelu_new"}) == 1352


def test_missing_sizes_take_their_defaults():
    # d_model / num_layers; one head (head_dim = h = 8, one key/value head); MLP 4h = 32, gated
    t5ish = {"d_model": 8, "num_layers": 2, "vocab_size": 10, "model_type": "mystery"}
    attention = 8 * 1 * 8 + 2 * 8 * 1 * 8 + 1 * 8 * 8
    assert count(t5ish) == 160 + 2 * (attention + 3 * 8 * 32 + 16) + 8


def test_a_mixture_of_experts_counts_active_experts_for_compute_and_all_for_memory():
    moe = {**LLAMA, "intermediate_size": 100, "moe_intermediate_size": 16, "num_experts_per_tok": 2,
           "num_local_experts": 4}
    assert count(moe) == 160 + 2 * (192 + 2 * 384 + 16) + 8 == 2120
    assert count(moe, total=True) == 160 + 2 * (192 + 4 * 384 + 16) + 8 == 3656
    for key in ("num_experts", "n_routed_experts"):
        other = {k: v for k, v in moe.items() if k != "num_local_experts"} | {key: 4}
        assert count(other, total=True) == 3656
    shared = {**moe, "n_shared_experts": 1}
    assert count(shared) == 160 + 2 * (192 + 3 * 384 + 16) + 8
    assert count(shared, total=True) == 160 + 2 * (192 + 5 * 384 + 16) + 8
    unknown = {k: v for k, v in moe.items() if k != "num_local_experts"}
    assert count(unknown, total=True) == count(unknown) == 2120   # no expert count: the active ones
    assert count({**LLAMA, "num_experts_per_tok": 0, "num_local_experts": 4}) == 1352   # 0: not a mixture


def test_only_gpt2_ties_embeddings_by_default():
    assert model_type_ties({"model_type": "gpt2"}) and model_type_ties({"model_type": "GPT2"})
    assert not model_type_ties({"model_type": "llama"}) and not model_type_ties({})


# --------------------------------------------------------------------------------------- sizes from names and text

def test_a_size_in_the_models_name_not_its_organisations():
    assert params_from_name("Qwen/Qwen2.5-0.5B-Instruct/") == 0.5
    assert params_from_name("acme-1b-lab/mystery") is None
    assert params_from_name("acme/model-135m") == 0.135 and params_from_name("acme/model-135M") == 0.135


def test_counts_people_type():
    assert parse_count("1_000") == 1000.0 and parse_count("12,000") == 12000.0
    assert parse_count("2k") == 2000.0 and parse_count("2K") == 2000.0 and parse_count("25M") == 25e6
    assert parse_count("2e6") == 2e6 and parse_count("1E3") == 1000.0
    assert parse_count(5) == 5.0 and parse_count(2.5) == 2.5
    with pytest.raises(ValueError, match="^expected a number, got a boolean$"):
        parse_count(True)


# --------------------------------------------------------------------------------------- FLOPs terms

SHAPE = ModelShape(1.0, 16, 2048, 32000, "given")


def test_the_flops_terms_are_named_as_the_docs_describe_them():
    assert list(flops_terms(SHAPE, "full")) == ["forward (2N)", "backward, activation gradients (2N)",
                                                "backward, weight gradients (2N)"]
    assert list(flops_terms(SHAPE, "full", gradient_checkpointing=True))[-1] == "recompute, gradient checkpointing (2N)"
    lora = list(flops_terms(SHAPE, "lora"))
    assert lora[:2] == ["forward (2N)", "backward, activation gradients (2N)"] and len(lora) == 3
    assert lora[2].startswith("lora adapter, forward + backward (6 x ")


# --------------------------------------------------------------------------------------- GPU choice

def test_the_gpu_for_a_memory_size_is_the_smallest_with_that_much_within_half_a_gb():
    assert gpu_for_memory(24)["name"] == "rtx-4090"        # the cheapest of the 24 GB cards
    assert gpu_for_memory(24.5)["name"] == "rtx-4090"      # 24 GB is within 0.5 GB of 24.5
    assert gpu_for_memory(25)["name"] == "a100-40gb"    # the next size up
    assert gpu_for_memory(1000)["name"] == "mi300x"        # more than any: the largest
    assert gpu_for_memory(1)["name"] == "t4"


def test_the_cheapest_gpu_that_fits_has_at_least_the_memory_needed():
    assert cheapest_gpu_that_fits(24)["name"] == "rtx-4090"
    assert cheapest_gpu_that_fits(24.01)["name"] == "l40s"
    assert cheapest_gpu_that_fits(1000)["name"] == "mi300x"   # none fits: the largest


def test_between_gpus_at_the_same_price_the_faster_is_cheaper(monkeypatch):
    table = {"slow": {"peak_bf16_tflops": 100, "memory_gb": 48, "usd_per_hour": 1.0},
             "fast": {"peak_bf16_tflops": 300, "memory_gb": 48, "usd_per_hour": 1.0},
             "big": {"peak_bf16_tflops": 50, "memory_gb": 96, "usd_per_hour": 3.0}}
    monkeypatch.setattr(estimate_math, "_GPUS", table)
    assert cheapest_gpu_that_fits(40)["name"] == "fast"
    assert cheapest_gpu_that_fits(200)["name"] == "big"


# --------------------------------------------------------------------------------------- the fastest setup that fits

SMALL = ModelShape(0.5, 24, 896, 151936, "given")


def fits(method, adapter, batch, ckpt, gpus=1, seq_len=1024):
    return memory_gb(SMALL, method, adapter, seq_len=seq_len, micro_batch=batch, gradient_checkpointing=ckpt, gpus=gpus)


def test_the_largest_batch_without_checkpointing_wins_when_it_fits():
    assert largest_fitting_batch(SMALL, "lora", None, 1000, seq_len=1024) == (8, False)


def test_a_limit_exactly_at_a_setups_memory_fits_it():
    limit = fits("lora", None, 4, False)
    assert fits("lora", None, 8, False) > limit
    assert largest_fitting_batch(SMALL, "lora", None, limit, seq_len=1024) == (4, False)


def test_checkpointing_is_the_fallback_when_no_batch_fits_without_it():
    limit = fits("dpo", "full", 1, True, gpus=4)
    assert fits("dpo", "full", 1, False, gpus=4) > limit and fits("dpo", "full", 2, True, gpus=4) > limit
    assert largest_fitting_batch(SMALL, "dpo", "full", limit, seq_len=1024, gpus=4) == (1, True)


def test_the_method_adapter_and_gpus_all_count():
    limit = fits("dpo", "full", 1, True, gpus=4)
    assert largest_fitting_batch(SMALL, "dpo", "full", limit - 0.01, seq_len=1024, gpus=4) is None
    one_gpu = fits("full", None, 1, True, gpus=1)
    assert largest_fitting_batch(SMALL, "full", None, one_gpu - 0.01, seq_len=1024) is None  # 1 GPU by default
    assert largest_fitting_batch(SMALL, "full", None, one_gpu - 0.01, seq_len=1024, gpus=2) is not None


@pytest.mark.parametrize("route, method, kind", [("continued_pretraining", None, "cpt"),
                                                 ("continued_pretraining", "dpo", "cpt"),
                                                 ("fine_tuning", "dpo", "dpo"), ("fine_tuning", "sft_then_dpo", "dpo"),
                                                 ("fine_tuning", "sft", "sft"), ("fine_tuning", None, "sft"),
                                                 ("rag", None, "sft")])
def test_the_memory_kind_of_a_route(route, method, kind):
    assert _kind_for(route, method) == kind


# --------------------------------------------------------------------------------------- memory

from rung.advisor.estimate_math import memory_breakdown, method_adapter  # noqa: E402
from rung.advisor.estimator import memory_facts, training_steps  # noqa: E402
from rung.core.errors import RungError  # noqa: E402


def test_memory_defaults_are_2048_tokens_one_sequence_no_checkpointing_one_gpu():
    assert memory_breakdown(SHAPE, "lora") == memory_breakdown(SHAPE, "lora", None, seq_len=2048, micro_batch=1,
                                                               gradient_checkpointing=False, gpus=1)
    assert memory_gb(SHAPE, "lora") == round(sum(memory_breakdown(SHAPE, "lora").values()), 2)


def test_only_full_training_is_sharded_and_the_reference_copy_is_sharded_with_it():
    assert memory_breakdown(SHAPE, "lora", gpus=4) == memory_breakdown(SHAPE, "lora", gpus=1)
    one, four = memory_breakdown(SHAPE, "dpo", "full", gpus=1), memory_breakdown(SHAPE, "dpo", "full", gpus=4)
    assert one["reference_model"] == 2.0 and four["reference_model"] == 0.5   # 2 bytes x 1B params, over 4 GPUs
    assert four["weights"] == one["weights"] / 4 and four["activations"] == one["activations"]


def test_the_method_names_the_adapter_or_the_stage():
    assert method_adapter("full", None) == ("sft", "full") and method_adapter("LoRA", "full") == ("sft", "lora")
    assert method_adapter("dpo", None) == ("dpo", "lora") and method_adapter("cpt", None) == ("cpt", "full")
    assert method_adapter("dpo", "qlora") == ("dpo", "qlora")
    with pytest.raises(RungError) as error:
        method_adapter("ful", None)
    assert error.value.message == 'method "ful" is not one of full, lora, qlora, dpo, cpt (did you mean "full"?)'
    with pytest.raises(RungError) as error:
        method_adapter("dpo", "qlor")
    assert error.value.message == 'adapter "qlor" is not one of lora, qlora, full (did you mean "qlora"?)'


MINIMAL = dict(seq_len=1024, micro_batch=1, gradient_checkpointing=True)


@pytest.mark.parametrize("method, route, kind", [("sft", "fine_tuning", None), ("dpo", "fine_tuning", "dpo"),
                                                 (None, "continued_pretraining", "cpt")])
def test_memory_facts_are_the_smallest_setup_of_the_routes_kind(method, route, kind):
    facts = memory_facts(SMALL, method, route, 24, 2)
    assert facts["lora_gb"] == round(memory_gb(SMALL, kind or "lora", "lora", **MINIMAL), 1)
    assert facts["qlora_gb"] == round(memory_gb(SMALL, kind or "qlora", "qlora", **MINIMAL), 1)
    assert facts["full_gb"] == round(memory_gb(SMALL, kind or "full", "full", **MINIMAL, gpus=2), 1)


def test_lora_fits_the_gpus_together_full_training_fits_one_sharded_gpu():
    lora = memory_gb(SHAPE, "lora", "lora", **MINIMAL)
    full = memory_gb(SHAPE, "full", "full", **MINIMAL, gpus=1)
    at_limit = memory_facts(SHAPE, "sft", "fine_tuning", lora, 1)
    assert at_limit["lora_fits"] is True                       # exactly the memory needed fits
    assert memory_facts(SHAPE, "sft", "fine_tuning", lora / 2 + 0.01, 2)["lora_fits"] is True
    assert memory_facts(SHAPE, "sft", "fine_tuning", lora - 0.01, 1)["lora_fits"] is False
    assert memory_facts(SHAPE, "sft", "fine_tuning", full, 1)["full_fits"] is True
    assert memory_facts(SHAPE, "sft", "fine_tuning", full - 0.01, 1)["full_fits"] is False
    qlora = memory_gb(SHAPE, "qlora", "qlora", **MINIMAL)
    assert memory_facts(SHAPE, "sft", "fine_tuning", qlora, 1)["qlora_fits"] is True
    assert memory_facts(SHAPE, "sft", "fine_tuning", qlora - 0.01, 1)["qlora_fits"] is False
    assert memory_facts(SHAPE, "sft", "fine_tuning", 0.5, 1)["lora_fits"] is False    # a GPU, if a small one


@pytest.mark.parametrize("memory, count", [(0, 1), (24, 0), (0, 0)])
def test_without_a_gpu_nothing_fits_or_fails(memory, count):
    facts = memory_facts(SHAPE, "sft", "fine_tuning", memory, count)
    assert facts["lora_fits"] is None and facts["qlora_fits"] is None and facts["full_fits"] is None
    assert facts["full_gb"] == round(memory_gb(SHAPE, "full", "full", **MINIMAL, gpus=1), 1)


# --------------------------------------------------------------------------------------- training tokens
# SFT: examples x 512 tokens x 3 epochs; DPO: pairs x 2 sides x 512 x 1 epoch; GRPO: max(examples, 500) prompts x
# 8 completions x 512 tokens x (1 + 3 for decoding) x 1 epoch; CPT: corpus tokens x 1 epoch, then SFT.

@pytest.mark.parametrize("method, expected", [
    (None, [("sft", "sft", 1000 * 512 * 3)]),
    ("sft", [("sft", "sft", 1000 * 512 * 3)]),
    ("dpo", [("dpo", "dpo", 300 * 2 * 512)]),
    ("sft_then_dpo", [("sft", "sft", 1000 * 512 * 3), ("dpo", "dpo", 300 * 2 * 512)]),
    ("grpo", [("grpo", "sft", 1000 * 8 * 512 * 4)]),
    ("sft_then_grpo", [("sft", "sft", 1000 * 512 * 3), ("grpo", "sft", 1000 * 8 * 512 * 4)]),
])
def test_training_tokens_per_fine_tuning_method(method, expected):
    answers = {"labeled_examples": 1000, "preference_pairs": 300}
    assert training_steps(answers, {"route": "fine_tuning", "method": method}) == expected


def test_missing_counts_are_zero_and_grpo_assumes_500_prompts():
    assert training_steps({}, {"route": "fine_tuning", "method": "sft"}) == [("sft", "sft", 0)]
    assert training_steps({}, {"route": "fine_tuning", "method": "dpo"}) == [("dpo", "dpo", 0)]
    assert training_steps({}, {"route": "fine_tuning", "method": "grpo"}) == [("grpo", "sft", 500 * 8 * 512 * 4)]
    assert training_steps({}, {"route": "continued_pretraining"}) == [("cpt", "cpt", 0), ("sft", "sft", 0)]


def test_generated_pairs_stand_in_for_missing_examples_only():
    assert training_steps({}, {"route": "fine_tuning", "method": "sft", "generate_pairs": True}) == \
        [("sft", "sft", 2000 * 512 * 3)]
    assert training_steps({"labeled_examples": 10}, {"route": "fine_tuning", "generate_pairs": True}) == \
        [("sft", "sft", 10 * 512 * 3)]


def test_continued_pretraining_reads_the_corpus_then_fine_tunes_on_the_examples():
    assert training_steps({"domain_corpus_tokens": 5e6, "labeled_examples": 100}, {"route": "continued_pretraining"}) \
        == [("cpt", "cpt", 5e6), ("sft", "sft", 100 * 512 * 3)]
    assert training_steps({"labeled_examples": 100}, {"route": "rag"}) == []


def test_compute_counts_the_active_experts_unless_asked_for_all():
    moe = {**LLAMA, "num_experts_per_tok": 2, "num_local_experts": 4}
    assert params_from_config(moe) == params_from_config(moe, total=False) < params_from_config(moe, total=True)
    # no experts per token: a dense model, whatever else the config says
    assert count({**LLAMA, "num_local_experts": 4}, total=True) == 1352


def test_sizes_a_config_leaves_out_count_nothing():
    assert count({}) == 0
    assert count({k: v for k, v in LLAMA.items() if k != "vocab_size"}) == 2 * (192 + 384 + 16) + 8
    assert count({k: v for k, v in LLAMA.items() if k != "num_hidden_layers"}) == 160 + 8


def test_an_explicit_head_size_and_head_count_are_read_under_either_name():
    # head_dim 3 (not h / heads = 4): attention = 8 x 2 x 3 + 2 x 8 x 1 x 3 + 2 x 3 x 8 = 144
    assert count({**LLAMA, "head_dim": 3}) == 160 + 2 * (144 + 384 + 16) + 8
    gpt2 = {"n_embd": 8, "n_layer": 2, "vocab_size": 10, "n_head": 2, "head_dim": 2, "n_inner": 16,
            "model_type": "gpt2"}
    # 2 heads of 2, key/value heads = heads: 8 x 2 x 2 + 2 x 8 x 2 x 2 + 2 x 2 x 8 = 128; gpt2: plain MLP, tied
    assert count(gpt2) == 80 + 2 * (128 + 256 + 16) + 8
    one_head = {k: v for k, v in LLAMA.items() if k not in ("num_attention_heads", "num_key_value_heads")}
    # heads default to 1 (and key/value heads to heads): 8 x 1 x 4 + 2 x 8 x 1 x 4 + 1 x 4 x 8 = 128
    assert count(one_head) == 160 + 2 * (128 + 384 + 16) + 8


def test_a_size_must_stand_alone_in_the_name():
    assert params_from_name("acme/model-3BX") is None and params_from_name("acme/model-3B-X") == 3.0


def test_dpo_adds_the_reference_models_forward_pass():
    terms = flops_terms(SHAPE, "dpo", "lora")
    assert terms["reference model forward (2N)"] == 2 * 1e9
    assert "reference model forward (2N)" not in flops_terms(SHAPE, "lora")


def test_memory_facts_are_given_to_a_tenth_of_a_gb():
    raw = memory_gb(SHAPE, "lora", "lora", **MINIMAL)
    assert raw != round(raw, 1)                    # the shape's figure has a second decimal to round away
    facts = memory_facts(SHAPE, "sft", "fine_tuning", 80, 1)
    assert facts["lora_gb"] == round(raw, 1)
    assert all(facts[k] == round(facts[k], 1) for k in ("lora_gb", "qlora_gb", "full_gb"))
