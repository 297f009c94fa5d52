"""The estimator's arithmetic: model shapes, FLOPs, memory, the GPU table, counts. Pure Python, no policy.

advisor/estimator.py builds on it: the estimate of one run with what would make it fit, the GPU pick, and the
advisor's route estimate. Callers import every name from rung.advisor.estimator.

Compute (FLOPs per training token, N = parameters):
- full fine-tuning and continued pretraining: 6N — forward 2N, backward 4N (2N for activation gradients and
  2N for weight gradients). Kaplan et al. 2020, "Scaling Laws for Neural Language Models", C ~= 6ND.
- LoRA / QLoRA: ~4N — the forward 2N plus the activation gradients 2N; frozen weights get no weight
  gradients. The adapter itself adds 6 x its own (small) parameter count. QLoRA does the same arithmetic on
  dequantized weights (same FLOPs; dequantization makes each step slower in practice).
- DPO: each pair is two sequences (chosen and rejected). Per token of each: the policy's forward and backward
  (6N full, 4N LoRA) plus the frozen reference model's forward, 2N (TRL computes reference log-probs with a
  forward pass; with LoRA the reference is the base model with the adapter switched off).
- gradient checkpointing recomputes the forward once more: +2N.
Attention's s^2 term is left out (small next to 6N at these sequence lengths), as in the 6ND rule.

Time: FLOPs / (peak dense BF16 FLOP/s x MFU). The MFU is not a constant: advisor/efficiency.py fits it, with a band,
to published runs of the same GPU generation and a similar size (advisor/public_runs.yaml). For scale: the runs
there achieved 26-51% on A100s and 14-38% on H100/H800s by this 6N count.

Memory per GPU, in decimal GB (1e9 bytes; conservative next to GPUs sold in GiB):
- weights: 2 bytes/param in BF16. QLoRA: NF4 4 bits + double-quantized constants 0.127 bits/param
  (Dettmers et al. 2023, "QLoRA", section 3) = 0.516 bytes/param; embeddings and the LM head stay 16-bit.
- trainable-parameter gradients: full 2 bytes/param (BF16); LoRA adapters are kept in FP32: 4 bytes/param.
- optimizer: AdamW keeps two states per trainable parameter in the parameter's dtype: 4 bytes/param for a model
  loaded in BF16 (TRL loads the checkpoint's dtype), 8 bytes/param for the FP32 adapters. Mixed precision with
  FP32 master weights would be 16 bytes/param in all (Rajbhandari et al. 2020, "ZeRO", section 3.1).
- activations: 34 x s x b x h bytes per layer (Korthikanti et al. 2022, "Reducing Activation Recomputation in
  Large Transformer Models", eq. 1, without the 5as/h attention-score term: SDPA/flash attention never stores
  the s x s matrix). With gradient checkpointing: 2 x s x b x h per layer (layer inputs) + one layer's 34sbh.
- logits: b x s x vocab x 4 bytes (FP32 logits) — often the largest term for small models with large vocabularies.
- overhead: 1.5 GB fixed for the CUDA context and allocator fragmentation (rung's assumption).
- DPO: activations and logits for two sequences per pair; full-weight DPO holds a second, frozen copy of the
  weights as the reference model; LoRA/QLoRA DPO reuses the base model with the adapter disabled (no copy).
- several GPUs: full training shards weights, gradients and optimizer state across them (ZeRO-3 / FSDP full
  shard); LoRA/QLoRA runs data-parallel, each GPU holding the whole base model.
These reproduce the commonly documented ranges for a 7-8B model at sequence 1024, micro-batch 1, no
checkpointing (LLaMA-Factory README, "Hardware Requirement" table; tests/advisor/test_advisor_estimator.py).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from rung.core.errors import RungError, did_you_mean
from rung.core.vocab import ADAPTERS

BYTES_PER_GB = 1e9
DEFAULT_PARAMS_B = 7.0
OVERHEAD_GB = 1.5
ACTIVATION_BYTES_PER_SBH = 34   # Korthikanti et al. 2022, per layer, 16-bit, no attention-score term
CHECKPOINT_BYTES_PER_SBH = 2    # one 16-bit layer input per layer is kept
QLORA_BYTES_PER_PARAM = (4 + 0.127) / 8  # NF4 + double-quantized constants (QLoRA paper)
LORA_R = 16                     # core/settings.py lora_r default (a test checks they agree)
# LoRA on every linear layer ("all-linear"): r x (in + out) per matrix. Attention q,k,v,o ~ 4 x 2h; a gated MLP
# with intermediate ~2.7h has three matrices ~ 3 x 3.7h. ~18 h r per layer (Llama-2-7B, r=16: 40M; this: 38M).
LORA_PARAMS_PER_HR_LAYER = 18
METHODS = ("full", "lora", "qlora", "dpo", "cpt")  # what the estimator sizes: an adapter, or a training stage


class ModelShape(NamedTuple):
    params_b: float   # billions of parameters (activated ones, for a mixture of experts)
    layers: int
    hidden: int
    vocab: int
    source: str       # "config.json" | "gguf" | "name" | "given" | "default"
    like: str = ""    # the reference model whose layers/hidden/vocab we borrowed, when not from config.json
    total_params_b: float | None = None  # all weights of a mixture of experts (memory); None = params_b


# Shapes of well-known open models: (params_b, layers, hidden, vocab, name). When only a size is known we borrow
# the nearest one's layers/hidden/vocab (from each model's config.json on the Hugging Face hub).
REFERENCE_SHAPES = (
    (0.135, 30, 576, 49152, "SmolLM2-135M"),
    (0.49, 24, 896, 151936, "Qwen2.5-0.5B"),
    (1.24, 16, 2048, 128256, "Llama-3.2-1B"),
    (1.54, 28, 1536, 151936, "Qwen2.5-1.5B"),
    (3.21, 28, 3072, 128256, "Llama-3.2-3B"),
    (7.24, 32, 4096, 32768, "Mistral-7B-v0.3"),
    (8.03, 32, 4096, 128256, "Llama-3.1-8B"),
    (14.7, 48, 5120, 152064, "Qwen2.5-14B"),
    (32.8, 64, 5120, 152064, "Qwen2.5-32B"),
    (70.6, 80, 8192, 128256, "Llama-3.1-70B"),
    (405.0, 126, 16384, 128256, "Llama-3.1-405B"),
)
# builtin:tiny when its cached folder is not there yet (core/models.py TINY_SPEC).
TINY_DEFAULT = {"hidden_size": 128, "num_hidden_layers": 4, "vocab_size": 4096, "intermediate_size": 384,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "tie_word_embeddings": True,
                "model_type": "llama"}

_GPUS: dict[str, dict[str, Any]] | None = None


# ----------------------------------------------------------------------------------------------- model shape

def _nearest_reference(params_b: float) -> tuple:
    return min(REFERENCE_SHAPES, key=lambda ref: abs(math.log(params_b / ref[0])))


def params_from_name(name: str) -> float | None:
    """'Qwen/Qwen2.5-0.5B-Instruct' -> 0.5, 'llama-3.1-405b' -> 405, 'SmolLM2-135M' -> 0.135, 'gpt2' -> None."""
    base = name.rstrip("/").split("/")[-1]
    moe = re.search(r"(?<![\d.])(\d+)x(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", base)
    if moe:  # Mixtral-8x7B: ~ experts x size (an upper bound; shared attention makes it smaller)
        return float(moe.group(1)) * float(moe.group(2))
    found = re.findall(r"(?<![\d.])(\d+(?:\.\d+)?)([bBmM])(?![a-zA-Z])", base)
    if not found:
        return None
    number, unit = found[-1]
    return float(number) / (1000.0 if unit in "mM" else 1.0)


def params_from_config(config: dict[str, Any], total: bool = False) -> float:
    """Parameter count (billions) of a decoder-only transformer from its config.json (Llama/Qwen/Mistral/GPT-2 keys).

    For a mixture of experts: the activated parameters (what compute scales with), or all of them with total=True.
    """
    h = int(config.get("hidden_size") or config.get("n_embd") or config.get("d_model") or 0)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers") or 0)
    vocab = int(config.get("vocab_size") or 0)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or (h // heads if heads else h))
    ffn = int(config.get("moe_intermediate_size") or config.get("intermediate_size") or config.get("n_inner") or 4 * h)
    gated = str(config.get("model_type", "")).lower() not in ("gpt2", "gpt_neox", "gptj", "opt", "bloom", "falcon") \
        and str(config.get("hidden_act", config.get("activation_function", "silu"))) not in ("gelu_new",)
    attention = h * heads * head_dim + 2 * h * kv_heads * head_dim + heads * head_dim * h
    mlp = (3 if gated else 2) * h * ffn
    experts_per_token = int(config.get("num_experts_per_tok") or 0)
    if experts_per_token:  # mixture of experts: activated experts for compute, every expert for memory
        experts = int(config.get("num_local_experts") or config.get("num_experts") or config.get("n_routed_experts")
                      or experts_per_token)
        mlp *= (experts if total else experts_per_token) + int(config.get("n_shared_experts") or 0)
    tied = bool(config.get("tie_word_embeddings", model_type_ties(config)))
    embeddings = vocab * h * (1 if tied else 2)
    return (embeddings + layers * (attention + mlp + 2 * h) + h) / 1e9


def model_type_ties(config: dict[str, Any]) -> bool:
    return str(config.get("model_type", "")).lower() in ("gpt2",)


def _shape_from_config(config: dict[str, Any], params_b: float | None, source: str) -> ModelShape:
    h = int(config.get("hidden_size") or config.get("n_embd") or config.get("d_model") or 0)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or config.get("num_layers") or 0)
    vocab = int(config.get("vocab_size") or 0)
    if not (h and layers and vocab):
        raise ValueError("config.json lacks hidden_size / num_hidden_layers / vocab_size")
    total = params_from_config(config, total=True)
    active = params_from_config(config)
    # The config is exact: it wins over a size the user typed (the plan then estimates the model it will run).
    return ModelShape(active, layers, h, vocab, source, "", total if total > active * 1.01 else None)


def _cache_root() -> Path:
    return Path(os.environ.get("RUNG_CACHE", Path.home() / ".cache" / "rung")).expanduser()


def _builtin_config() -> dict[str, Any] | None:
    """The cached builtin:tiny config.json when the folder exists (it is built by trainers.models, with torch)."""
    import json

    try:
        candidates = sorted(_cache_root().glob("builtin-tiny-*/config.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for path in reversed(candidates):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


CATALOG_FILE = Path(__file__).with_name("catalog.yaml")  # open models with their shapes


def _catalog_shape(spec: str) -> ModelShape | None:
    """Exact shape of a hub id listed in advisor/catalog.yaml (engines/bigger_model.py ranks the same models)."""
    if not CATALOG_FILE.is_file():
        return None
    import yaml

    try:
        models = yaml.load(CATALOG_FILE.read_text(encoding="utf-8"),
                           Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)).get("models") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    wanted = spec.lower().rstrip("/")
    for model in models:
        model_id = str(model.get("id", "")).lower()
        if wanted == model_id or wanted.split("/")[-1] == model_id.split("/")[-1]:
            try:
                return ModelShape(float(model.get("active_b") or model["params_b"]), int(model["layers"]),
                                  int(model["hidden"]), int(model["vocab"]), "name", str(model["id"]),
                                  float(model["params_b"]) if model.get("active_b") else None)
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _gguf_shape(spec: str, params_b: float | None) -> ModelShape | None:
    """A GGUF spec (a .gguf file, a folder of one, ollama:NAME, smollm2-135m-instruct): its shape from the file's
    header (core/gguf_in.py reads it from a memory map; nothing is loaded). None for any other spec."""
    from rung.core.gguf_in import gguf_file, is_gguf_spec, read_header

    if not is_gguf_spec(spec):
        return None
    header = read_header(gguf_file(spec), spec, for_transformers=False)  # no transformers check: nothing loads
    if not (header.layers and header.hidden and header.vocab):
        raise RungError(f"{spec}: the GGUF header does not give the model's shape (block_count, embedding_length, "
                        "token_embd): pass --params-b")
    return ModelShape(params_b or header.parameters / 1e9, header.layers, header.hidden, header.vocab, "gguf")


def model_shape(base_model: str | None, params_b: float | None = None) -> ModelShape:
    """Parameters, layers, hidden size and vocabulary of a base model, from the best source available.

    A local folder (or builtin:tiny's cached folder) -> its config.json; a hub id listed in advisor/catalog.yaml
    -> its exact shape; a name that states a size ("0.5B", "7b", "405B", "135M") -> that size with the nearest
    well-known model's shape; else `params_b` if given; else 7B. A config.json wins over `params_b`; an explicit
    `params_b` wins over a size derived from a name.
    """
    if params_b is not None and params_b <= 0:
        raise RungError(f"params_b must be > 0, got {params_b}")
    spec = str(base_model).strip() if base_model else ""
    if spec.startswith("builtin:"):
        config = _builtin_config() or TINY_DEFAULT
        return _shape_from_config(config, params_b, "config.json")
    if spec:
        gguf = _gguf_shape(spec, params_b)
        if gguf is not None:
            return gguf
        path = Path(spec).expanduser()
        config_file = path / "config.json"
        if config_file.is_file():
            import json

            try:
                config = json.loads(config_file.read_text(encoding="utf-8"))
                return _shape_from_config(config, params_b, "config.json")
            except (OSError, ValueError) as error:
                raise RungError(f"{config_file}: cannot read the model's shape: {error}") from None
        known = _catalog_shape(spec)
        if known is not None:
            return known._replace(params_b=params_b, total_params_b=None) if params_b else known
        named = params_from_name(spec)
        if named is not None:
            size = params_b or named
            ref = _nearest_reference(size)
            return ModelShape(size, ref[1], ref[2], ref[3], "name", ref[4])
    size = params_b or DEFAULT_PARAMS_B
    ref = _nearest_reference(size)
    return ModelShape(size, ref[1], ref[2], ref[3], "given" if params_b else "default", ref[4])


def _as_shape(shape_or_params: ModelShape | float | int) -> ModelShape:
    if isinstance(shape_or_params, ModelShape):
        return shape_or_params
    return model_shape(None, float(shape_or_params))


def lora_params(shape: ModelShape, r: int = LORA_R) -> float:
    """Trainable parameters of a LoRA adapter on every linear layer (approximation above)."""
    return LORA_PARAMS_PER_HR_LAYER * shape.hidden * r * shape.layers


# ----------------------------------------------------------------------------------------------- compute

def method_adapter(method: str, adapter: str | None) -> tuple[str, str]:
    """Normalise (method, adapter): full/lora/qlora are SFT with that adapter; dpo defaults to LoRA; cpt to full."""
    method = str(method).lower()
    if method not in METHODS:
        raise RungError(f'method "{method}" is not one of {", ".join(METHODS)}{did_you_mean(method, METHODS)}')
    if method in ("full", "lora", "qlora"):
        return "sft", method
    if adapter is not None and adapter not in ADAPTERS:
        raise RungError(f'adapter "{adapter}" is not one of {", ".join(ADAPTERS)}{did_you_mean(str(adapter), ADAPTERS)}')
    return method, adapter or ("lora" if method == "dpo" else "full")


def flops_terms(shape_or_params: ModelShape | float, method: str, adapter: str | None = None,
                gradient_checkpointing: bool = False) -> dict[str, float]:
    """Training FLOPs per token, term by term (the module docstring has the sources); zero terms are left out."""
    shape = _as_shape(shape_or_params)
    kind, adapter = method_adapter(method, adapter)
    n = shape.params_b * 1e9
    terms = {"forward (2N)": 2 * n, "backward, activation gradients (2N)": 2 * n}
    if adapter == "full":
        terms["backward, weight gradients (2N)"] = 2 * n
    else:  # frozen base weights get no weight gradients; the adapter trains with its own 6 x its parameters
        terms[f"{adapter} adapter, forward + backward (6 x {human_count(lora_params(shape))})"] = 6 * lora_params(shape)
    if gradient_checkpointing:
        terms["recompute, gradient checkpointing (2N)"] = 2 * n
    if kind == "dpo":
        terms["reference model forward (2N)"] = 2 * n
    return terms


def flops_per_token(shape_or_params: ModelShape | float, method: str, adapter: str | None = None,
                    gradient_checkpointing: bool = False) -> float:
    """Training FLOPs per token (see the module docstring). For DPO, per token of each of chosen and rejected."""
    return sum(flops_terms(shape_or_params, method, adapter, gradient_checkpointing).values())


# ----------------------------------------------------------------------------------------------- GPUs

def _load_gpus() -> dict[str, dict[str, Any]]:
    global _GPUS
    if _GPUS is None:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        text = (Path(__file__).with_name("gpus.yaml")).read_text(encoding="utf-8")
        _GPUS = yaml.load(text, Loader=loader)["gpus"]
    return _GPUS


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def gpu_names() -> list[str]:
    return list(_load_gpus())


def gpu_spec(name: str) -> dict[str, Any]:
    """{name, peak_bf16_tflops, memory_gb, usd_per_hour} for a GPU; tolerant of case, dashes and common aliases."""
    table = _load_gpus()
    wanted = _norm(name)
    for canonical, spec in table.items():
        if wanted == _norm(canonical) or wanted in (_norm(a) for a in spec.get("aliases") or ()):
            return {"name": canonical, "peak_bf16_tflops": float(spec["peak_bf16_tflops"]),
                    "memory_gb": float(spec["memory_gb"]), "usd_per_hour": float(spec["usd_per_hour"]),
                    "generation": str(spec.get("generation") or "unknown")}
    names = list(table)
    spelled = {(_norm(a)): c for c, s in table.items() for a in [c, *(s.get("aliases") or ())]}
    import difflib

    close = difflib.get_close_matches(wanted, list(spelled), n=1, cutoff=0.6)
    hint = f' (did you mean "{spelled[close[0]]}"?)' if close else ""
    raise RungError(f'unknown GPU "{name}"{hint}; known GPUs: {", ".join(names)}')


# ----------------------------------------------------------------------------------------------- memory

def memory_breakdown(shape: ModelShape, method: str, adapter: str | None = None, *, seq_len: int = 2048,
                     micro_batch: int = 1, gradient_checkpointing: bool = False, gpus: int = 1) -> dict[str, float]:
    """Per-GPU memory in GB by term (see the module docstring)."""
    kind, adapter = method_adapter(method, adapter)
    n = (shape.total_params_b or shape.params_b) * 1e9  # memory holds every expert of a mixture of experts
    embedding_params = shape.vocab * shape.hidden * 2  # input embeddings + LM head (untied upper bound)
    embedding_params = min(embedding_params, n)
    if adapter == "qlora":
        weights = (n - embedding_params) * QLORA_BYTES_PER_PARAM + embedding_params * 2
    else:
        weights = 2 * n
    if adapter == "full":
        gradients, optimizer = 2 * n, 4 * n
    else:
        adapter_params = lora_params(shape)
        weights += 4 * adapter_params
        gradients, optimizer = 4 * adapter_params, 8 * adapter_params
    reference = 2 * n if (kind == "dpo" and adapter == "full") else 0.0
    sequences = micro_batch * (2 if kind == "dpo" else 1)
    sbh = seq_len * sequences * shape.hidden
    if gradient_checkpointing:
        activations = CHECKPOINT_BYTES_PER_SBH * sbh * shape.layers + ACTIVATION_BYTES_PER_SBH * sbh
    else:
        activations = ACTIVATION_BYTES_PER_SBH * sbh * shape.layers
    logits = seq_len * sequences * shape.vocab * 4
    shards = max(1, int(gpus)) if adapter == "full" else 1
    out = {
        "weights": weights / shards / BYTES_PER_GB,
        "reference_model": reference / shards / BYTES_PER_GB,
        "gradients": gradients / shards / BYTES_PER_GB,
        "optimizer": optimizer / shards / BYTES_PER_GB,
        "activations": activations / BYTES_PER_GB,
        "logits": logits / BYTES_PER_GB,
        "overhead": OVERHEAD_GB,
    }
    return {key: round(value, 3) for key, value in out.items()}


def memory_gb(shape: ModelShape, method: str, adapter: str | None = None, **kwargs: Any) -> float:
    return round(sum(memory_breakdown(shape, method, adapter, **kwargs).values()), 2)


# ----------------------------------------------------------------------------------------------- counts

def human_count(value: float) -> str:
    """1234 -> '1.2K', 14.8e12 -> '14.8T'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:g}"


def parse_count(text: Any) -> float:
    """'14.8T' -> 1.48e13, '25M' -> 2.5e7, '12,000' -> 1.2e4, '2e6' -> 2e6. Raises ValueError with a reason."""
    if isinstance(text, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(text, (int, float)):
        return float(text)
    cleaned = str(text).strip().replace(",", "").replace("_", "")
    match = re.fullmatch(r"(-?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBtT]?)", cleaned)
    if not match:
        raise ValueError(f'"{text}" is not a number (examples: 2000, 50M, 1.5B, 14.8T)')
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2).lower()]
    return float(match.group(1)) * scale
