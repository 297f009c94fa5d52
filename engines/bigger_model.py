"""The `bigger_model` engine: the top rung. Which open models fit your GPUs, what serving them costs, and,
for candidates you have locally, how they do side by side on your eval set.

The catalog (advisor/catalog.yaml) lists open model families and sizes with parameters, context length,
licence, chat/base and their shapes. For each model, on the plan's GPUs (answers gpu_memory_gb x gpu_count,
or settings gpu / gpu_memory_gb / gpus):

- inference memory per GPU = (weights + KV cache) / GPUs (tensor parallel) + 1.5 GB overhead, where
  weights = params x 2 bytes (BF16) or x 0.5625 (4-bit AWQ/GPTQ: 4 bits + group scales), and
  KV cache = 2 (K and V) x layers x kv_heads x head_dim x 2 bytes x context_tokens x batch;
- LoRA / QLoRA training memory per GPU from advisor.estimator (the same figures `rung estimate` prints);
- cost per million tokens served, when a rate is known (settings.usd_per_gpu_hour, or a named GPU's list
  price): decoding is memory-bound, so tokens/s ~ batch x bandwidth x GPUs x 0.6 / (bytes of active weights +
  batch x KV bytes per sequence), and $/M tokens = rate x GPUs / (tokens/s x 3600) x 1e6. An order of
  magnitude for planning; measure on your serving stack (vLLM, TGI) before you commit.

Writes candidates.md (the table), candidates.json, and with settings.candidates (local folders, builtin:
models, or cached hub ids) and data.eval, eval_outputs.jsonl and samples.md side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rung.advisor import estimator
from rung.core.errors import RungError
from rung.core.fileio import atomic_write_json, atomic_write_text
from rung.core.protocol import StepContext, StepResult
from rung.core.resolve import step_settings
from rung.core.settings import BiggerModelSettings

CATALOG_PATH = estimator.CATALOG_FILE  # advisor/catalog.yaml: the estimator reads the same shapes
KV_BYTES = 2                  # BF16 K/V cache
INT4_BYTES_PER_PARAM = 0.5625  # 4-bit weights + one 16-bit scale per group of 64 (AWQ/GPTQ-style)
DECODE_EFFICIENCY = 0.6       # share of peak bandwidth a serving stack reaches while decoding
KINDS = ("chat", "base", "any")
LICENCE_FILTERS = ("any", "permissive")


def load_catalog(path: Path = CATALOG_PATH) -> dict[str, Any]:
    from rung.core.fileio import read_yaml

    catalog = read_yaml(path, what="model catalog")
    return catalog


# ---------------------------------------------------------------- arithmetic ------------------------------

def kv_cache_gb(model: dict[str, Any], tokens: int, batch: int = 1) -> float:
    return 2 * model["layers"] * model["kv_heads"] * model["head_dim"] * KV_BYTES * tokens * batch / 1e9


def inference_gb(model: dict[str, Any], *, tokens: int, batch: int = 1, gpus: int = 1, bits: int = 16) -> float:
    """Per-GPU serving memory (decimal GB): weights + KV cache split over GPUs, plus the fixed overhead."""
    from rung.advisor.estimator import OVERHEAD_GB

    per_param = 2.0 if bits == 16 else INT4_BYTES_PER_PARAM
    weights = model["params_b"] * 1e9 * per_param / 1e9
    return round((weights + kv_cache_gb(model, tokens, batch)) / max(1, gpus) + OVERHEAD_GB, 2)


def training_gb(model: dict[str, Any], adapter: str, *, seq_len: int) -> float:
    """Per-GPU LoRA / QLoRA memory from the advisor's estimator (data parallel: each GPU holds the model)."""
    from rung.advisor.estimator import ModelShape, memory_gb

    shape = ModelShape(model["params_b"], model["layers"], model["hidden"], model["vocab"], "catalog")
    return memory_gb(shape, adapter, seq_len=seq_len, micro_batch=1)


def tokens_per_second(model: dict[str, Any], *, bandwidth_gbs: float, gpus: int, batch: int, tokens: int,
                      bits: int = 16) -> float:
    """Aggregate decode throughput, memory-bound: bytes read per step = active weights + every sequence's KV."""
    per_param = 2.0 if bits == 16 else INT4_BYTES_PER_PARAM
    weight_bytes = model.get("active_b", model["params_b"]) * 1e9 * per_param
    kv_bytes = kv_cache_gb(model, tokens, batch) * 1e9
    return batch * bandwidth_gbs * 1e9 * gpus * DECODE_EFFICIENCY / (weight_bytes + kv_bytes)


def usd_per_million_tokens(rate_per_gpu_hour: float, gpus: int, tokens_per_s: float) -> float:
    return rate_per_gpu_hour * gpus / (tokens_per_s * 3600) * 1e6


# ---------------------------------------------------------------- the table -------------------------------

def gpus_needed(model: dict[str, Any], *, tokens: int, batch: int) -> str:
    """The cheapest 'N x gpu' (tensor parallel, N a power of two up to 16) that serves the model in BF16."""
    from rung.advisor.estimator import gpu_names, gpu_spec

    options = []
    for name in gpu_names():
        spec = gpu_spec(name)
        for count in (1, 2, 4, 8, 16):
            if inference_gb(model, tokens=tokens, batch=batch, gpus=count) <= spec["memory_gb"]:
                options.append((spec["usd_per_hour"] * count, count, spec["name"]))
                break
    if not options:
        return "more than 16 GPUs"
    _, count, name = min(options)
    return f"{count} x {name}"


def hardware(settings: BiggerModelSettings, answers: dict[str, Any]) -> dict[str, Any]:
    """The GPUs to fit: name, memory per GPU, count, bandwidth and rate (None where unknown)."""
    from rung.advisor.estimator import gpu_for_memory, gpu_spec

    catalog = load_catalog()
    spec = gpu_spec(settings.gpu) if settings.gpu else None
    memory = settings.gpu_memory_gb if settings.gpu_memory_gb is not None else (
        spec["memory_gb"] if spec else float(answers.get("gpu_memory_gb") or 0))
    gpus = settings.gpus or int(answers.get("gpu_count") or 0) or 1
    like = spec or (gpu_for_memory(memory) if memory else None)
    rate = settings.usd_per_gpu_hour if settings.usd_per_gpu_hour is not None else (spec["usd_per_hour"] if spec else None)
    return {
        "gpu": spec["name"] if spec else None,
        "memory_gb": memory,
        "gpus": gpus if memory else 0,
        "like": like["name"] if like else None,
        "bandwidth_gbs": catalog["gpus"].get(like["name"]) if like else None,
        "usd_per_gpu_hour": rate,
    }


def rank(settings: BiggerModelSettings, hw: dict[str, Any]) -> list[dict[str, Any]]:
    """Every catalog model that passes the filters, with its memory, fit and cost figures."""
    catalog = load_catalog()
    permissive = set(catalog.get("permissive_licences") or ())
    families = {f.lower() for f in settings.families}
    rows = []
    for model in catalog["models"]:
        if settings.kind != "any" and model["kind"] != settings.kind:
            continue
        if settings.licence == "permissive" and model["licence"] not in permissive:
            continue
        if model["context"] < settings.min_context or (families and model["family"].lower() not in families):
            continue
        tokens = min(settings.context_tokens, model["context"])
        gpus = max(1, hw["gpus"])
        row = {**model,
               "inference_gb": inference_gb(model, tokens=tokens, batch=settings.batch, gpus=gpus),
               "inference_int4_gb": inference_gb(model, tokens=tokens, batch=settings.batch, gpus=gpus, bits=4),
               "lora_gb": training_gb(model, "lora", seq_len=settings.lora_seq_len),
               "qlora_gb": training_gb(model, "qlora", seq_len=settings.lora_seq_len)}
        memory = hw["memory_gb"]
        row["serve"] = ("bf16" if memory and row["inference_gb"] <= memory else
                        "4-bit" if memory and row["inference_int4_gb"] <= memory else "no")
        row["train"] = ("lora" if memory and row["lora_gb"] <= memory else
                        "qlora" if memory and row["qlora_gb"] <= memory else "no")
        if row["serve"] == "no":
            row["needs_gpu"] = gpus_needed(model, tokens=tokens, batch=settings.batch)
        bits = 16 if row["serve"] != "4-bit" else 4
        if hw["bandwidth_gbs"] and row["serve"] != "no":
            tps = tokens_per_second(model, bandwidth_gbs=hw["bandwidth_gbs"], gpus=gpus, batch=settings.batch,
                                    tokens=tokens, bits=bits)
            row["tokens_per_s"] = round(tps, 1)
            if hw["usd_per_gpu_hour"] is not None:
                row["usd_per_mtok"] = round(usd_per_million_tokens(hw["usd_per_gpu_hour"], gpus, tps), 3)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["serve"] == "no", -r["params_b"] if r["serve"] != "no" else r["params_b"]))


def table_markdown(rows: list[dict[str, Any]], hw: dict[str, Any]) -> str:
    where = (f"{hw['gpus']} x {hw['gpu'] or str(hw['memory_gb']) + ' GB GPU'}"
             + (f" (bandwidth as {hw['like']})" if hw["like"] and not hw["gpu"] else "")) if hw["memory_gb"] else "no GPU"
    lines = [f"Fit on **{where}**; memory per GPU in decimal GB; serve = BF16 or 4-bit inference, "
             "train = LoRA or QLoRA.", "",
             "| model | params | context | licence | kind | serve GB (bf16/4-bit) | serves | LoRA/QLoRA GB | trains "
             "| tokens/s | $ per M tokens |", "|---" * 11 + "|"]
    for r in rows:
        serves = r["serve"] if r["serve"] != "no" else f"no (needs {r.get('needs_gpu', '-')})"
        params = f"{r['params_b']:g}B" + (f" ({r['active_b']:g}B active)" if r.get("active_b") else "")
        context = r["context"] // 1000 if r["context"] % 1000 == 0 else r["context"] // 1024
        lines.append(f"| {r['id']} | {params} | {context}K | {r['licence']} | {r['kind']} | "
                     f"{r['inference_gb']:.1f} / {r['inference_int4_gb']:.1f} | {serves} | "
                     f"{r['lora_gb']:.1f} / {r['qlora_gb']:.1f} | {r['train']} | "
                     f"{r.get('tokens_per_s', '-')} | {r.get('usd_per_mtok', '-')} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the engine ------------------------------

def _label(spec: str) -> str:
    return spec if spec.startswith("builtin:") or "/" not in spec or not Path(spec).exists() else Path(spec).name


def _is_local(spec: str) -> bool:
    """builtin:* or a folder on disk: evaluating it downloads nothing."""
    return spec.startswith("builtin:") or Path(spec).expanduser().is_dir()


def run_step(step: dict[str, Any], ctx: StepContext) -> StepResult:

    settings = step_settings(BiggerModelSettings, step, ctx)
    if settings.kind not in KINDS:
        raise RungError(f'settings.kind "{settings.kind}" is not one of {", ".join(KINDS)}')
    if settings.licence not in LICENCE_FILTERS:
        raise RungError(f'settings.licence "{settings.licence}" is not one of {", ".join(LICENCE_FILTERS)}')
    answers = ctx.plan.get("answers") if isinstance(ctx.plan.get("answers"), dict) else {}
    hw = hardware(settings, answers)
    rows = rank(settings, hw)
    table = table_markdown(rows, hw)
    serving = [r for r in rows if r["serve"] != "no"]
    training = [r for r in rows if r["train"] != "no"]
    metrics: dict[str, Any] = {"catalog_models": len(rows), "fit_to_serve": len(serving), "fit_to_train": len(training)}
    summary = []
    if hw["memory_gb"]:
        if serving:
            top = serving[0]
            summary.append(f"{len(serving)} of {len(rows)} catalog models fit to serve; the largest is "
                           f"**{top['id']}** ({top['params_b']:g}B, {top['serve']}). {len(training)} fit LoRA/QLoRA "
                           "training, should the bigger model still need fine-tuning.")
            metrics["largest_servable"] = top["id"]
        else:
            summary.append(f"None of the {len(rows)} catalog models fits {hw['memory_gb']:g} GB per GPU, even in 4-bit.")
    else:
        summary.append("The plan names no GPU: the table shows what each model needs and the cheapest GPU that "
                       "serves it. Set answers gpu_memory_gb / gpu_count, or settings gpu, to filter.")
    outputs = {"candidates_table": str(ctx.run_dir / "candidates.md"), "candidates_json": str(ctx.run_dir / "candidates.json")}
    atomic_write_text(outputs["candidates_table"], "# Open models for this plan\n\n" + table)
    atomic_write_json(outputs["candidates_json"], {"hardware": hw, "models": rows})

    eval_path = ctx.data_path("eval")
    candidates = list(settings.candidates)
    base = ctx.plan.get("base_model")
    if settings.include_base_model and base and base not in candidates and _is_local(str(base)):
        candidates.insert(0, str(base))
    if candidates and eval_path:
        from rung.core.rows import load_task_rows
        from rung.engines import prompting, prompts

        rows_eval = load_task_rows(eval_path, "eval examples")[: settings.max_eval_examples]
        examples_path = ctx.data_path("examples")
        shots = load_task_rows(examples_path, "examples")[:4] if examples_path else []
        schema = prompts.load_schema(ctx.data_path("schema"))
        json_goal = prompts.wants_json(ctx.plan, rows_eval, schema)
        instructions = prompts.build_system_prompt(ctx.plan, shots or rows_eval, schema)
        results: dict[str, dict[str, Any]] = {}
        for spec in candidates:
            results[_label(spec)] = prompting.evaluate(
                spec, {"prompt": (instructions, shots)}, rows_eval, max_new_tokens=settings.max_new_tokens,
                batch_size=settings.batch_size, json_goal=json_goal, schema=schema,
                trust_remote_code=settings.trust_remote_code)["prompt"]
        key = prompting.headline_metric(next(iter(results.values()))["metrics"])
        for name, result in results.items():
            for metric, value in result["metrics"].items():
                metrics[f"{name}/{metric}"] = value
        best = max(results, key=lambda n: results[n]["metrics"][key])
        metrics["best_candidate"] = best
        records = [{"input": r["input"], "expected": r["output"], **{n: results[n]["outputs"][i] for n in results}}
                   for i, r in enumerate(rows_eval)]
        outputs["eval_outputs"] = str(ctx.run_dir / "eval_outputs.jsonl")
        atomic_write_text(outputs["eval_outputs"], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        outputs["samples"] = str(ctx.run_dir / "samples.md")
        atomic_write_text(outputs["samples"], "# Candidates side by side on the eval set\n\n"
                          + prompting.samples_markdown(rows_eval, {n: r["outputs"] for n, r in results.items()}))
        names = list(next(iter(results.values()))["metrics"])
        lines = ["| candidate | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
        lines += [f"| {n} | " + " | ".join(f"{r['metrics'][m]:.0%}" for m in names) + " |" for n, r in results.items()]
        summary.append(f"Local candidates on {len(rows_eval)} eval examples (same prompt for each):\n\n"
                       + "\n".join(lines) + f"\n\nBest by {key}: **{best}**.")
    elif candidates:
        summary.append("Candidates were named but the plan has no data.eval: add an eval set to compare them.")
    else:
        summary.append("To compare models on your eval set, download candidates and list them in "
                       "settings.candidates (local folders or cached hub ids).")
    summary.append("Full table: `candidates.md`.\n\n" + table)
    return StepResult(outputs=outputs, metrics=metrics, summary="\n\n".join(summary))
