"""Estimates with policy: one training run's figures with what would make it fit, the GPU a plan is priced on,
and the advisor's route estimate (training steps, tokens, epochs). The arithmetic (FLOPs, memory, model shapes, the
GPU table) is in advisor/estimate_math.py, with its sources; its names are importable from here too, so callers
use `from rung.advisor import estimator` (estimator.estimate, estimator.model_shape, estimator.OVERHEAD_GB, ...).

Time: FLOPs / (peak dense BF16 FLOP/s x MFU). The MFU and its band come from published runs of the same GPU
generation and a similar size (advisor/efficiency.py, advisor/public_runs.yaml): every priced estimate carries
gpu_hours_low, gpu_hours (the point) and gpu_hours_high, and the runs it is like.
"""

from __future__ import annotations

import math
from typing import Any

from rung.advisor.estimate_math import (
    ACTIVATION_BYTES_PER_SBH, ADAPTERS, BYTES_PER_GB, CATALOG_FILE, CHECKPOINT_BYTES_PER_SBH,
    DEFAULT_PARAMS_B, LORA_PARAMS_PER_HR_LAYER, LORA_R, METHODS, OVERHEAD_GB, QLORA_BYTES_PER_PARAM, REFERENCE_SHAPES,
    TINY_DEFAULT, ModelShape, flops_per_token, flops_terms, gpu_names, gpu_spec, human_count, lora_params,
    memory_breakdown, memory_gb, method_adapter, model_shape, model_type_ties, params_from_config, params_from_name, parse_count)
from rung.core.errors import RungError

# The arithmetic's names are re-exported: other layers call estimator.model_shape, estimator.OVERHEAD_GB, ...
__all__ = [
    "ACTIVATION_BYTES_PER_SBH", "ADAPTERS", "BYTES_PER_GB", "CATALOG_FILE", "CHECKPOINT_BYTES_PER_SBH",
    "DEFAULT_PARAMS_B", "LORA_PARAMS_PER_HR_LAYER", "LORA_R", "METHODS", "OVERHEAD_GB", "QLORA_BYTES_PER_PARAM",
    "REFERENCE_SHAPES", "TINY_DEFAULT", "ModelShape", "flops_per_token", "flops_terms", "gpu_names", "gpu_spec",
    "human_count", "lora_params", "memory_breakdown", "memory_gb", "method_adapter", "model_shape", "model_type_ties",
    "params_from_config", "params_from_name", "parse_count",
    # policy: this module
    "CPT_EPOCHS", "DPO_EPOCHS", "EMBED_PASSAGES_PER_CPU_S", "FIT_SEQ_LEN", "GENERATED_PAIRS", "RAG_CHUNK_TOKENS",
    "RAG_OVERLAP", "SFT_EPOCHS", "TOKENS_PER_EXAMPLE", "cheapest_gpu_that_fits", "estimate", "gpu_for_memory",
    "largest_fitting_batch", "memory_facts", "route_estimate", "suggestions", "training_steps",
]


# ----------------------------------------------------------------------------------------------- GPU pick

def gpu_for_memory(memory_gb: float) -> dict[str, Any]:
    """The table GPU that best matches a memory size (the smallest with at least that much; else the largest)."""
    specs = sorted((gpu_spec(name) for name in gpu_names()), key=lambda s: (s["memory_gb"], s["usd_per_hour"]))
    for spec in specs:
        if spec["memory_gb"] >= memory_gb - 0.5:
            return spec
    return specs[-1]


def cheapest_gpu_that_fits(need_gb: float) -> dict[str, Any]:
    """The cheapest GPU per hour in the table with at least `need_gb` of memory (else the largest)."""
    specs = [gpu_spec(name) for name in gpu_names()]
    fitting = [s for s in specs if s["memory_gb"] >= need_gb]
    if not fitting:
        return max(specs, key=lambda s: s["memory_gb"])
    return min(fitting, key=lambda s: (s["usd_per_hour"], -s["peak_bf16_tflops"]))


# ----------------------------------------------------------------------------------------------- estimate

def estimate(params_b: float | None = None, tokens: float = 0, gpu: str | None = "a100-80gb", gpus: int = 1,
             method: str = "lora", seq_len: int = 2048, micro_batch: int = 1, layers: int | None = None,
             hidden: int | None = None, vocab: int | None = None, mfu: float | None = None,
             usd_per_gpu_hour: float | None = None, gradient_checkpointing: bool = False,
             adapter: str | None = None, base_model: str | None = None,
             shape: ModelShape | None = None) -> dict[str, Any]:
    """Compute, GPU-hours, dollars and per-GPU memory of one training run, with what would make it fit.

    `tokens` counts training tokens seen (for DPO: tokens of chosen + rejected together). `gpu` is a table name
    (None: compute only). `adapter` refines dpo/cpt (dpo defaults to lora, cpt to full). The model's shape comes
    from `shape`, else `base_model` (config.json, catalog, name) and `params_b`; layers/hidden/vocab override it.
    `mfu` None: the efficiency public runs of this GPU's generation and size achieved (advisor/efficiency.py).
    """
    if mfu is not None and not 0 < mfu <= 1:
        raise RungError(f"mfu must be in (0, 1], got {mfu}")
    if tokens < 0:
        raise RungError(f"tokens must be >= 0, got {tokens}")
    if gpus < 1:
        raise RungError(f"gpus must be >= 1, got {gpus}")
    shape = shape or model_shape(base_model, params_b)
    if layers or hidden or vocab:
        shape = shape._replace(layers=layers or shape.layers, hidden=hidden or shape.hidden, vocab=vocab or shape.vocab)
    kind, adapter = method_adapter(method, adapter)
    terms = flops_terms(shape, method, adapter, gradient_checkpointing)
    per_token = sum(terms.values())
    flops = per_token * tokens
    spec = gpu_spec(gpu) if gpu else None
    rate = usd_per_gpu_hour if usd_per_gpu_hour is not None else (spec["usd_per_hour"] if spec else None)
    mem_kwargs = dict(seq_len=seq_len, micro_batch=micro_batch, gradient_checkpointing=gradient_checkpointing, gpus=gpus)
    breakdown = memory_breakdown(shape, method, adapter, **mem_kwargs)
    total = round(sum(breakdown.values()), 2)
    result: dict[str, Any] = {
        "params_b": round(shape.params_b, 4),
        "shape": {"layers": shape.layers, "hidden": shape.hidden, "vocab": shape.vocab, "source": shape.source,
                  **({"like": shape.like} if shape.like else {})},
        "tokens": tokens,
        "method": method,
        "adapter": adapter,
        "gpu": spec["name"] if spec else None,
        "gpus": gpus,
        "seq_len": seq_len,
        "micro_batch": micro_batch,
        "gradient_checkpointing": gradient_checkpointing,
        "mfu": mfu,
        "flops_per_token": per_token,
        "flops_terms": [{"term": name, "flops_per_token": value, "share": value / per_token if per_token else 0.0}
                        for name, value in terms.items()],
        "flops": flops,
        "gpu_hours_low": None,
        "gpu_hours": None,
        "gpu_hours_high": None,
        "wall_hours": None,
        "usd_per_gpu_hour": rate,
        "cost_usd": None,
        "memory_gb": total,
        "memory_breakdown": breakdown,
        "gpu_memory_gb": spec["memory_gb"] if spec else None,
        "fits": None,
        "suggestions": [],
    }
    if spec:
        from rung.advisor.efficiency import price

        result.update(price(flops, spec, shape.params_b, gpus, rate, mfu))
        result["fits"] = total <= spec["memory_gb"]
        if not result["fits"]:
            result["suggestions"] = suggestions(shape, method, adapter, spec["memory_gb"], **mem_kwargs)
    if kind == "dpo":
        result["reference_model"] = (
            "a second, frozen copy of the weights (full-weight DPO)" if adapter == "full"
            else "the base model with the adapter disabled: no second copy")
    return result


def suggestions(shape: ModelShape, method: str, adapter: str, gpu_memory_gb: float, *, seq_len: int,
                micro_batch: int, gradient_checkpointing: bool, gpus: int) -> list[str]:
    """What would make a run fit in `gpu_memory_gb` per GPU, each with its estimated per-GPU memory.

    Each change is tried alone, then together with gradient checkpointing; only setups that fit are listed.
    """
    kind, adapter = method_adapter(method, adapter)
    base = dict(seq_len=seq_len, micro_batch=micro_batch, gradient_checkpointing=gradient_checkpointing, gpus=gpus)
    ckpt = " + gradient checkpointing"

    def first_fit(shape_: ModelShape, method_: str, adapter_: str, **changes: Any) -> tuple[float, str] | None:
        for extra, label in (({}, ""), ({"gradient_checkpointing": True}, ckpt)):
            if extra and gradient_checkpointing:
                continue
            need = memory_gb(shape_, method_, adapter_, **{**base, **changes, **extra})
            if need <= gpu_memory_gb:
                return need, label
        return None

    out: list[str] = []
    if adapter != "qlora":
        fit = first_fit(shape, "dpo" if kind == "dpo" else "qlora", "qlora")
        if fit:
            out.append(f"QLoRA (4-bit base model + LoRA){fit[1]}: ~{fit[0]:.1f} GB per GPU")
    if adapter == "full":
        for n in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
            fit = first_fit(shape, method, adapter, gpus=n) if n > gpus else None
            if fit:
                out.append(f"{n} GPUs with ZeRO-3 / FSDP full sharding{fit[1]}: ~{fit[0]:.1f} GB per GPU")
                break
    if micro_batch > 1:
        fit = first_fit(shape, method, adapter, micro_batch=1)
        if fit:
            out.append(f"micro-batch 1 with gradient_accumulation_steps {micro_batch} (same effective batch)"
                       f"{fit[1]}: ~{fit[0]:.1f} GB")
    if not gradient_checkpointing:
        need = memory_gb(shape, method, adapter, **{**base, "gradient_checkpointing": True})
        if need <= gpu_memory_gb:
            out.append(f"gradient checkpointing (about a third more compute): ~{need:.1f} GB")
    for ref in reversed(REFERENCE_SHAPES):
        if ref[0] >= shape.params_b * 0.9:
            continue
        fit = first_fit(ModelShape(ref[0], ref[1], ref[2], ref[3], "name", ref[4]), method, adapter)
        if fit:
            out.append(f"a smaller model (~{ref[0]:g}B, like {ref[4]}){fit[1]}: ~{fit[0]:.1f} GB")
            break
    if not out:
        out.append(f"a GPU with more memory: none of QLoRA, sharding, checkpointing or a smaller model fits in "
                   f"{gpu_memory_gb:g} GB")
    return out


def largest_fitting_batch(shape: ModelShape, method: str, adapter: str | None, gpu_memory_gb: float, *,
                          seq_len: int, gpus: int = 1, candidates: tuple[int, ...] = (8, 4, 2, 1)) -> tuple[int, bool] | None:
    """(micro_batch, gradient_checkpointing) of the fastest setup that fits, or None when nothing does."""
    for checkpointing in (False, True):
        for batch in candidates:
            if memory_gb(shape, method, adapter, seq_len=seq_len, micro_batch=batch,
                         gradient_checkpointing=checkpointing, gpus=gpus) <= gpu_memory_gb:
                return batch, checkpointing
    return None


# ----------------------------------------------------------------------------------------------- the advisor's route

FIT_SEQ_LEN = 1024          # trainers.settings SFTSettings/DPOSettings/CPTSettings max_length default
TOKENS_PER_EXAMPLE = 512    # assumption: an SFT example or one side of a preference pair, prompt + answer
SFT_EPOCHS = 3              # trainers.settings SFTSettings.num_train_epochs
DPO_EPOCHS = 1              # trainers.settings DPOSettings.num_train_epochs
CPT_EPOCHS = 1              # trainers.settings CPTSettings.num_train_epochs
# GRPO (trainers/grpo.py): each prompt is answered num_generations times and every completion is then trained on
# like an SFT example (forward + backward, ~6N FLOPs a token). Generating a completion first costs one decode forward
# pass per token (~2N FLOPs) at roughly a tenth of a training step's utilization (decoding is memory-bound), i.e.
# about 2N x 10 / 6N ~ 3.3 trained tokens' time, counted as GRPO_DECODE_COST = 3. So a GRPO prompt costs
# num_generations x tokens x (1 + 3) = 8 x 512 x 4 = 16,384 SFT-token equivalents per epoch: 32x an SFT example.
GRPO_GENERATIONS = 8        # trainers GRPOSettings.num_generations (TRL's default)
GRPO_DECODE_COST = 3        # a generated token's time in trained tokens (see above)
GRPO_EPOCHS = 1             # trainers GRPOSettings.num_train_epochs
GRPO_PROMPTS = 500          # prompts assumed when fewer demonstrations than that are given (GRPO needs only prompts)
GENERATED_PAIRS = 2000      # pairs the plan generates from today's prompt when distilling it (shorten_prompt)
RAG_CHUNK_TOKENS, RAG_OVERLAP = 256, 32
EMBED_PASSAGES_PER_CPU_S = 7.5  # all-MiniLM-L6-v2, full 256-token passages, measured (docs/development.md, "Measured on 2 cores")


def _mem(shape: ModelShape, kind: str, adapter: str, **kwargs: Any) -> float:
    return memory_gb(shape, adapter if kind == "sft" else kind, adapter, **kwargs)


def _kind_for(route: str | None, method: str | None) -> str:
    if route == "continued_pretraining":
        return "cpt"
    return "dpo" if method in ("dpo", "sft_then_dpo") else "sft"


def memory_facts(shape: ModelShape, method: str | None, route: str | None, gpu_memory_gb: float,
                 gpu_count: int) -> dict[str, Any]:
    """lora/qlora/full footprints of the smallest sensible setup (micro-batch 1, checkpointing) and whether they fit.

    LoRA/QLoRA are compared with gpu_memory_gb x gpu_count (the base model may be split across GPUs); full training
    is sharded over gpu_count (ZeRO-3) and compared per GPU. Fits are None without a GPU.
    """
    kind = _kind_for(route, method)
    minimal = dict(seq_len=FIT_SEQ_LEN, micro_batch=1, gradient_checkpointing=True)
    lora = _mem(shape, kind, "lora", **minimal)
    qlora = _mem(shape, kind, "qlora", **minimal)
    full = _mem(shape, kind, "full", **minimal, gpus=max(1, int(gpu_count)))
    has_gpu = gpu_memory_gb > 0 and gpu_count > 0
    total = gpu_memory_gb * gpu_count
    return {
        "lora_gb": round(lora, 1), "qlora_gb": round(qlora, 1), "full_gb": round(full, 1),
        "lora_fits": (lora <= total) if has_gpu else None,
        "qlora_fits": (qlora <= total) if has_gpu else None,
        "full_fits": (full <= gpu_memory_gb) if has_gpu else None,
    }


def training_steps(answers: dict[str, Any], decision: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(step id, kind sft|dpo|cpt, training tokens) for a training route, with the token arithmetic of the module."""
    route, method = decision.get("route"), decision.get("method")
    labeled = answers.get("labeled_examples", 0)
    sft_examples = labeled or (GENERATED_PAIRS if decision.get("generate_pairs") else 0)
    sft_tokens = sft_examples * TOKENS_PER_EXAMPLE * SFT_EPOCHS
    dpo_tokens = answers.get("preference_pairs", 0) * 2 * TOKENS_PER_EXAMPLE * DPO_EPOCHS  # chosen + rejected
    grpo_tokens = (max(labeled, GRPO_PROMPTS) * GRPO_GENERATIONS * TOKENS_PER_EXAMPLE * (1 + GRPO_DECODE_COST)
                   * GRPO_EPOCHS)
    if route == "fine_tuning":
        return {"sft": [("sft", "sft", sft_tokens)], "dpo": [("dpo", "dpo", dpo_tokens)],
                "sft_then_dpo": [("sft", "sft", sft_tokens), ("dpo", "dpo", dpo_tokens)],
                # GRPO's memory is SFT's (a micro-batch of completions); beta > 0 would add a reference copy
                "grpo": [("grpo", "sft", grpo_tokens)],
                "sft_then_grpo": [("sft", "sft", sft_tokens), ("grpo", "sft", grpo_tokens)]}[method or "sft"]
    if route == "continued_pretraining":
        return [("cpt", "cpt", answers.get("domain_corpus_tokens", 0) * CPT_EPOCHS), ("sft", "sft", labeled * TOKENS_PER_EXAMPLE * SFT_EPOCHS)]
    return []


def route_estimate(answers: dict[str, Any], shape: ModelShape, decision: dict[str, Any]) -> dict[str, Any]:
    """The estimate `rung advise` shows and plan.yaml records, for the route in `decision`."""
    route = decision.get("route")
    steps = training_steps(answers, decision)
    if not steps:
        return _no_training_estimate(answers, shape, decision)
    adapter = decision.get("adapter") or "lora"
    has_gpu = answers.get("gpu_memory_gb", 0) > 0 and answers.get("gpu_count", 0) > 0
    minimal = dict(seq_len=FIT_SEQ_LEN, micro_batch=1, gradient_checkpointing=True)
    if has_gpu:
        spec, gpus, limit = gpu_for_memory(answers["gpu_memory_gb"]), int(answers["gpu_count"]), float(answers["gpu_memory_gb"])
    else:
        need = max(_mem(shape, kind, adapter, **minimal) for _, kind, _ in steps)
        spec = cheapest_gpu_that_fits(need)
        gpus, limit = 1, spec["memory_gb"]
    per_step = []
    for step_id, kind, tokens in steps:
        method = adapter if kind == "sft" else kind
        batch = largest_fitting_batch(shape, method, adapter, limit, seq_len=FIT_SEQ_LEN, gpus=gpus) or (1, True)
        one = estimate(shape=shape, tokens=tokens, gpu=spec["name"], gpus=gpus, method=method, adapter=adapter,
                       seq_len=FIT_SEQ_LEN, micro_batch=batch[0], gradient_checkpointing=batch[1])
        one["fits"] = one["memory_gb"] <= limit
        one["suggestions"] = [] if one["fits"] else suggestions(
            shape, method, adapter, limit, seq_len=FIT_SEQ_LEN, micro_batch=batch[0],
            gradient_checkpointing=batch[1], gpus=gpus)
        one["step"], one["training_tokens"] = step_id, tokens
        per_step.append(one)
    worst = max(per_step, key=lambda e: e["memory_gb"])
    out = {
        "route": route,
        "gpu": spec["name"],
        "gpus": gpus,
        "gpu_memory_gb": limit,
        "priced_as": spec["name"] if has_gpu else f"{spec['name']} (rented: cheapest in the table that fits)",
        "params_b": round(shape.params_b, 4),
        **{key: sum(e[key] for e in per_step) for key in SUMMED},
        "usd_per_gpu_hour": spec["usd_per_hour"],
        "memory_gb": worst["memory_gb"],
        "memory_breakdown": worst["memory_breakdown"],
        "micro_batch": worst["micro_batch"],
        "gradient_checkpointing": worst["gradient_checkpointing"],
        "fits": all(e["fits"] for e in per_step),
        "suggestions": worst["suggestions"],
        **{key: per_step[0][key] for key in ("mfu", "mfu_source", "mfu_low", "mfu_high", "efficiency", "references")},
        "steps": [{k: e[k] for k in ("step", "method", "adapter", "tokens", "flops", "gpu_hours_low", "gpu_hours",
                                      "gpu_hours_high", "cost_usd", "memory_gb", "micro_batch",
                                      "gradient_checkpointing", "fits")} for e in per_step],
        "flops_terms": route_flops_terms(per_step, shape),
        "assumptions": [
            f"{TOKENS_PER_EXAMPLE} tokens per example, {SFT_EPOCHS} SFT epochs, {DPO_EPOCHS} DPO epoch, "
            f"{CPT_EPOCHS} CPT epoch, sequence {FIT_SEQ_LEN}",
            mfu_assumption(per_step[0], spec),
        ],
    }
    if decision.get("method") in ("grpo", "sft_then_grpo"):
        out["assumptions"].append(
            f"GRPO: {GRPO_GENERATIONS} completions per prompt on {max(answers.get('labeled_examples', 0), GRPO_PROMPTS):,} "
            f"prompts, each generated token costing ~{GRPO_DECODE_COST} trained tokens' time")
    if decision.get("generate_pairs") and not answers.get("labeled_examples"):
        out["assumptions"].append(f"{GENERATED_PAIRS} training pairs generated by running today's prompt")
    if any(kind == "dpo" for _, kind, _ in steps):
        out["reference_model"] = per_step[-1].get("reference_model")
    return out


SUMMED = ("training_tokens", "flops", "gpu_hours_low", "gpu_hours", "gpu_hours_high", "wall_hours_low", "wall_hours",
          "wall_hours_high", "cost_usd_low", "cost_usd", "cost_usd_high")
# The plan's gate step generates answers with the trained model and with the base model prompted with few-shot
# examples (core/settings.py GateSettings: max_rows 50, max_new_tokens 128, num_examples 4; a test checks them).
GATE_ROWS, GATE_NEW_TOKENS, GATE_FEW_SHOT = 50, 128, 4


def mfu_assumption(one: dict[str, Any], spec: dict[str, Any]) -> str:
    """'MFU 43% (band 20%-66%) of a100-80gb's 312 dense BF16 TFLOPS: the 4 nearest ... (like Llama 2 7B: ...)'."""
    from rung.advisor.efficiency import like_text

    eff = one["efficiency"]
    basis = "as given" if one["mfu_source"] == "given" else eff["basis"]
    extra = "; outside the sizes of those runs" if eff["extrapolated"] else ""
    return (f"MFU {one['mfu']:.0%} (band {one['mfu_low']:.0%}-{one['mfu_high']:.0%}) of {spec['name']}'s "
            f"{spec['peak_bf16_tflops']:g} dense BF16 TFLOPS, {basis}{extra}, like {like_text(one['references'][0])}; "
            f"${spec['usd_per_hour']:.2f} per GPU-hour")


def route_flops_terms(per_step: list[dict[str, Any]], shape: ModelShape) -> list[dict[str, Any]]:
    """Each step's FLOPs by term, and the gate's generation, largest first, with its share of the total."""
    rows = [(f"{e['step']}: {term['term']}", term["flops_per_token"] * e["tokens"]) for e in per_step if e["tokens"]
            for term in e["flops_terms"]]
    prompt = (GATE_FEW_SHOT + 1) * TOKENS_PER_EXAMPLE + TOKENS_PER_EXAMPLE  # few-shot baseline + the trained model
    rows.append((f"gate: generation, 2 models x {GATE_ROWS} rows (2N per token; not in the GPU-hours: decoding is "
                 "memory-bound)",
                 2 * shape.params_b * 1e9 * GATE_ROWS * (prompt + 2 * GATE_NEW_TOKENS)))
    total = sum(flops for _, flops in rows) or 1.0
    return [{"term": name, "flops": flops, "share": flops / total}
            for name, flops in sorted(rows, key=lambda row: -row[1])]


def _no_training_estimate(answers: dict[str, Any], shape: ModelShape, decision: dict[str, Any]) -> dict[str, Any]:
    route = decision.get("route")
    out: dict[str, Any] = {"route": route, "training_tokens": 0, "flops": 0, "gpu_hours_low": 0.0, "gpu_hours": 0.0,
                           "gpu_hours_high": 0.0, "cost_usd": 0.0,
                           "memory_gb": None, "fits": None, "params_b": round(shape.params_b, 4)}
    if route == "rag":
        tokens = answers.get("domain_corpus_tokens", 0) if decision.get("corpus_as_documents") else 0
        if tokens:
            chunks = math.ceil(tokens / (RAG_CHUNK_TOKENS - RAG_OVERLAP))
            out.update(index_chunks=chunks, index_cpu_hours=round(chunks / EMBED_PASSAGES_PER_CPU_S / 3600, 2))
            out["note"] = (f"no training; indexing embeds ~{human_count(chunks)} chunks of {RAG_CHUNK_TOKENS} tokens once "
                           f"(~{out['index_cpu_hours']:g} CPU-hours with all-MiniLM-L6-v2), then only changed documents")
        else:
            out["note"] = "no training; indexing embeds each document once (~7.5 chunks per CPU-second), then only changes"
    elif route == "prompting":
        per_day = answers.get("prompt_tokens", 0) * answers.get("requests_per_day", 0)
        out["note"] = "no training; the cost is inference"
        if per_day:
            out["prompt_tokens_per_day"] = per_day
            out["note"] += f" ({human_count(per_day)} prompt tokens a day; prompt caching bills repeated prefixes at a discount)"
    else:
        bigger = next((ref for ref in REFERENCE_SHAPES if ref[0] > shape.params_b * 1.5), REFERENCE_SHAPES[-1])
        out["next_size_b"] = bigger[0]
        out["next_size_weights_gb"] = round(2 * bigger[0], 1)
        out["note"] = (f"no training; serving a ~{bigger[0]:g}B model (like {bigger[4]}) needs ~{2 * bigger[0]:.0f} GB "
                       f"for BF16 weights (~{QLORA_BYTES_PER_PARAM * bigger[0]:.0f} GB at 4 bits) plus the KV cache")
    return out
